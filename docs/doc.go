// Package docs holds the user documentation (docs/*.md, with README.md and
// configs/README.md at the top). It has no code: its test runs the
// command blocks that the documents mark with <!-- doctest: NAME -->, in
// a fresh temporary directory against a real iotsim, as a user following
// them would.
package docs
