package metrics

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/prometheus/client_golang/prometheus"
)

// The worker and connection-tracking metrics come from the tags of the
// snapshot fields that hold them (dataplane.Snapshot, dataplane.CTSnapshot
// and the conntrack structs it embeds): each counter is defined once,
// where it is counted.
var (
	workerStats = statFamilies(reflect.TypeOf(dataplane.Snapshot{}), "worker")
	ctStats     = statFamilies(reflect.TypeOf(dataplane.CTSnapshot{}), "conntrack")
)

// labelLists name the indexes of array counters, by the list a label tag
// names ("" leaves an index out).
var labelLists = map[string]func(i int) string{
	"drop": func(i int) string {
		if i == 0 {
			return ""
		}
		return filter.DropReason(i).String()
	},
	"invalid": func(i int) string {
		// InvalidTCP is the tracker's catch-all, never counted itself.
		if r := conntrack.InvalidReason(i); r != 0 && r != conntrack.InvalidTCP {
			return r.String()
		}
		return ""
	},
	"refusal":    func(i int) string { return conntrack.RefusalNames[i] },
	"protoclass": func(i int) string { return conntrack.ProtoClassNames[i] },
	"tcpstate": func(i int) string {
		if i == 0 {
			return ""
		}
		return tcpstate.State(i).String()
	},
}

// statFamily is the metric of one tagged field.
type statFamily struct {
	desc  *prometheus.Desc
	kind  string // counter, gauge, or seconds (nanoseconds shown in seconds)
	index []int  // the field, for reflect.Value.FieldByIndex
	// names gives an array field's label values; nil for a scalar.
	names func(int) string
	// sum is, for a histogram, the field holding its sum (nanoseconds).
	sum []int
}

// statFamilies reads the stat tags of t's fields (and of the structs it
// holds), as metrics of subsystem sub with a worker label. A bad tag is a
// programming error: it panics when the package loads, so that any test
// finds it.
func statFamilies(t reflect.Type, sub string) []statFamily {
	var out []statFamily
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct {
			for _, sf := range statFamilies(f.Type, sub) {
				sf.index = append([]int{i}, sf.index...)
				out = append(out, sf)
			}
			continue
		}
		tag := f.Tag.Get("stat")
		if tag == "" {
			continue
		}
		name, kind, _ := strings.Cut(tag, ",")
		fam := statFamily{kind: kind, index: []int{i}}
		labels := []string{"worker"}
		if l := f.Tag.Get("label"); l != "" {
			label, list, _ := strings.Cut(l, "=")
			if fam.names = labelLists[list]; fam.names == nil || f.Type.Kind() != reflect.Array {
				panic(fmt.Sprintf("metrics: %s.%s: label %q needs an array field and a known list", t, f.Name, l))
			}
			labels = append(labels, label)
		}
		if kind == "histogram" {
			sf, ok := t.FieldByName(f.Tag.Get("sum"))
			if !ok || f.Type.Kind() != reflect.Array {
				panic(fmt.Sprintf("metrics: %s.%s: a histogram is an array of buckets with sum:\"FIELD\"", t, f.Name))
			}
			fam.sum = sf.Index
		} else if kind != "counter" && kind != "gauge" && kind != "seconds" {
			panic(fmt.Sprintf("metrics: %s.%s: kind %q: want counter, gauge, seconds or histogram", t, f.Name, kind))
		}
		fam.desc = desc(sub, name, f.Tag.Get("help"), labels)
		out = append(out, fam)
	}
	return out
}

// collectStats sends the families' values of v (a snapshot) for worker.
func collectStats(ch chan<- prometheus.Metric, fams []statFamily, v reflect.Value, worker string) {
	for _, f := range fams {
		fv := v.FieldByIndex(f.index)
		if f.kind == "histogram" {
			f.sendHistogram(ch, fv, v.FieldByIndex(f.sum), worker)
			continue
		}
		if f.names == nil {
			f.send(ch, fv, worker)
			continue
		}
		for i := 0; i < fv.Len(); i++ {
			if n := f.names(i); n != "" {
				f.send(ch, fv.Index(i), worker, n)
			}
		}
	}
}

func (f *statFamily) send(ch chan<- prometheus.Metric, v reflect.Value, labels ...string) {
	var x float64
	if v.CanUint() {
		x = float64(v.Uint())
	} else {
		x = float64(max(v.Int(), 0)) // a live count, briefly negative between updates
	}
	t := prometheus.CounterValue
	switch f.kind {
	case "gauge":
		t = prometheus.GaugeValue
	case "seconds":
		x /= 1e9
	}
	ch <- constMetric(f.desc, t, x, labels...)
}

// sendHistogram sends an array of buckets (bucket i: below
// dataplane.RoundBucketBound(i) ns, the last the rest) as a histogram in
// seconds.
func (f *statFamily) sendHistogram(ch chan<- prometheus.Metric, buckets, sum reflect.Value, labels ...string) {
	cum := map[float64]uint64{}
	var n uint64
	for i := 0; i < buckets.Len(); i++ {
		n += buckets.Index(i).Uint()
		if i < buckets.Len()-1 {
			cum[float64(dataplane.RoundBucketBound(i))/1e9] = n
		}
	}
	m, err := prometheus.NewConstHistogram(f.desc, n, float64(sum.Uint())/1e9, cum, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(f.desc, err)
	}
	ch <- m
}
