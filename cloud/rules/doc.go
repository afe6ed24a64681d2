// Package rules is iotsim's AWS IoT Rules Engine: topic rules (an AWS IoT
// SQL statement, see package sql, and actions) kept in iotsim's database,
// run on the messages devices publish (and on those iotsim's services and
// the iot-data Publish API publish), with the republish, http and s3
// actions and the rule's errorAction. Basic Ingest topics
// ($aws/rules/<rule>/...) reach their rule only.
//
// The broker hands each message to HandleMessage on the publisher's
// connection goroutine; HandleMessage only matches topic filters and puts
// the message on a bounded queue, which Run's workers drain. A full queue
// drops the message and counts it: rule evaluation never slows the
// broker. Every drop, action failure and errorAction outcome is counted
// (Engine.Metrics, GET /iotsim/rules/metrics) and logged.
package rules
