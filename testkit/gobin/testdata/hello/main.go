// Command hello prints hello: a main package for gobin's test to build.
package main

import "fmt"

func main() { fmt.Println("hello") }
