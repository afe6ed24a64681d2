// Command stamped prints version.Version: TestStampInARealBuild builds it.
package main

import "github.com/iotagent/iotagent/internal/version"

func main() { println(version.Version) }
