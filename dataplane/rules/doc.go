// Package rules is dpfw's rule language: iptables-save text parsed into
// rules and chains (one handler per iptables match and target module,
// modules.go), printed back as iptables-save prints it (save.go), and the
// rule types the compiler (dataplane/filter) takes. It knows nothing of
// packets or of the compiled classifier.
package rules
