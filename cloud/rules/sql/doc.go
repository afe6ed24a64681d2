// Package sql is AWS IoT SQL, version 2016-03-23, as iotsim's rules engine
// runs it: a parser (Parse) for what fleets write (SELECT with *, fields,
// nested paths, AS, arithmetic and comparisons; FROM a topic filter; WHERE
// with AND, OR, NOT, IS [NOT] NULL, CASE) and an evaluator (Statement.Eval)
// over one MQTT message, with the functions rules use most (topic,
// clientid, principal, timestamp, newuuid, upper, lower, concat,
// substring, abs, round, floor, ceil, cast, isUndefined, isNull, get,
// encode and decode in base64, parse_time).
//
// Values follow AWS's data types: Int (int64), Decimal (float64), Boolean,
// String, Array ([]any), Object (map[string]any), Null (nil) and
// Undefined, which is not a value in JSON: a SELECT item that evaluates to
// Undefined is left out of the result, and a WHERE clause that is not
// Boolean true does not match.
package sql
