// Package config loads dpfw's YAML configuration with viper, strictly: an
// unknown or misspelt key is an error that names the file, the line, the key
// and the nearest valid key; every value is validated, and errors name the
// file:line of the offending key.
//
// Viper stays at this edge: Load decodes into a typed Config once, and nothing
// else in dpfw reads viper. Environment variables override scalar keys
// (DPFW_ prefix, "." and "-" → "_", e.g. DPFW_METRICS_LISTEN); list entries
// such as ports[0] cannot be overridden from the environment.
package config
