// Package config is the agent's configuration: one Config, built in a fixed
// order so that every value has exactly one source that wins:
//
//  1. Default() supplies every default.
//  2. Parse decodes the JSON file over it, strictly: an unknown field, a
//     duplicate field, a value of the wrong type or anything after the
//     object is an error naming the field's full path
//     (unknown field "sensors.outputs[1].pinn", mqtt.port: want a number,
//     got string). All such problems are reported at once. Relative paths
//     are resolved against the config file's directory, and the defaults
//     that depend on other fields (identity files under state_dir, the
//     simulated sensors' FIFOs) are filled in.
//  3. The caller applies command-line flags to the Config.
//  4. Validate reports every remaining problem at once.
//
// Load does 1, 2 and 4 for a file; a caller with flags to apply calls Parse
// (or reads the file itself), applies them, then calls Validate.
//
// Every error from Parse and Validate is a *FieldError (several are joined
// with errors.Join); FieldErrors lists them. Secrets are never in the
// config, only the paths of the files that hold them.
package config
