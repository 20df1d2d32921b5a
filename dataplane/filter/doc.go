// Package filter holds the data plane's verdicts and drop reasons, and the
// compiled, immutable rule set that workers load once per burst.
package filter
