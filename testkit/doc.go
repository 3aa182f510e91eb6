// Package testkit holds what jitid's tests, benchmarks and dev stack share
// to run real servers and wait on them: Eventually here, and in
// subpackages a process launcher (launch), the local Redis and NATS
// (localinfra, testserver), a gRPC test server (grpctest), binaries built
// from the workspace (gobin) and CPU time for benchmarks (cputime).
//
// It is a module of its own so that the servers it embeds (nats-server)
// stay out of the modules that production code imports.
package testkit
