// Package console is iotsim's web console: one small page, embedded in
// the binary (plain HTML, CSS and JavaScript, no CDN, no build step), that
// shows the fleet with its live connection state, each thing's shadows
// (and edits their desired state), live messages on topic filters, jobs
// and their executions, Device Defender violations and the topic rules
// with their counters.
//
// Its JSON endpoints call iotsim's own services (registry, shadow, jobs,
// defender, rules); live updates are Server-Sent Events fed in-process by
// a broker tap. A viewer that falls behind loses messages, never the
// broker's time: each viewer has a bounded buffer and its drops are
// counted and shown on the page.
//
// Every request needs the console's token, as a Jupyter server's do: the
// console_url in endpoint.json (readable by the data dir's owner only)
// carries it once, the console answers with an HttpOnly, SameSite=Strict
// cookie and redirects to the clean URL. The page sets a strict
// Content-Security-Policy and builds its DOM from text only, so a thing
// name, topic or payload can never run script.
package console
