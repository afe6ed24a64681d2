// Package atomicfile writes files so that a reader, or the next boot after a
// power cut, sees either the old contents or the new ones, never a mix or a
// truncated file: the data goes to a temporary file in the same directory,
// is flushed to disk, and is then renamed over the target, after which the
// directory itself is flushed so that the rename survives a crash.
package atomicfile
