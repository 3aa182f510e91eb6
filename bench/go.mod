module github.com/jitid/jitid/bench

go 1.26.0

require (
	github.com/jitid/jitid/pkg v0.0.0
	github.com/jitid/jitid/proto v0.0.0
)

replace (
	github.com/jitid/jitid/pkg => ../pkg
	github.com/jitid/jitid/proto => ../proto
)
