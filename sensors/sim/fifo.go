package sim

// MaxLineBytes is the longest line FeedFIFO accepts.
const MaxLineBytes = 64 << 10
