package filter

import (
	"reflect"
	"testing"

	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/packet"
)

// The compiled Filter holds nothing a worker writes: no atomic, no bucket.
// Mutable state belongs in State, so that a Filter can be shared, compared
// and replaced whole.
func TestFilterHoldsNoMutableState(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(tp reflect.Type, path string)
	walk = func(tp reflect.Type, path string) {
		if seen[tp] {
			return
		}
		seen[tp] = true
		if tp.PkgPath() == "sync/atomic" || tp.PkgPath() == "sync" || tp == reflect.TypeOf(limiter{}) || tp == reflect.TypeOf(Counter{}) {
			t.Errorf("Filter%s is %v: mutable state belongs in State", path, tp)
			return
		}
		switch tp.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			walk(tp.Elem(), path+"[]")
		case reflect.Map:
			walk(tp.Key(), path+"{key}")
			walk(tp.Elem(), path+"{}")
		case reflect.Struct:
			for i := 0; i < tp.NumField(); i++ {
				f := tp.Field(i)
				walk(f.Type, path+"."+f.Name)
			}
		}
	}
	walk(reflect.TypeOf(Filter{}), "")
}

// One compiled Filter installed twice gets two independent States: the
// counters and buckets of one never move the other's.
func TestInstallSeparatesState(t *testing.T) {
	rs, err := rules.ParseIptables("t", "-A FORWARD -m limit --limit 1/hour --limit-burst 1 -j ACCEPT\n-A FORWARD -j DROP\n")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Compile(rs, Env{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, b := Install(f, 1, nil), Install(f, 1, nil)
	p := &packet.Parsed{Kind: packet.IPv4, Proto: 17}
	run := func(x *Active) Verdict {
		return x.Run(Ctx{State: x.State.Worker(0), Now: 1}, p, rules.StateNew, HookForward, 0, 1).Verdict
	}
	if run(a) != Accept || run(a) != Drop {
		t.Fatal("the limit's burst of 1 is not enforced")
	}
	if run(b) != Accept {
		t.Fatal("a second State shares the first's bucket")
	}
	a.State.Worker(0).Counters()[0].Packets.Add(5)
	if pk, _ := b.State.Totals(0); pk != 0 {
		t.Fatalf("a second State sees the first's counters: %d", pk)
	}
}
