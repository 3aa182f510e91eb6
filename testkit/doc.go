// Package testkit holds what jitid's tests, benchmarks and dev stack share
// to run real servers and wait on them: Eventually and Poll here, and in
// subpackages a process launcher (launch), redis-server (localinfra), an
// embedded NATS (embeddednats), the servers a test gets (testserver), a
// gRPC test server (grpctest), binaries built from workspace modules
// (gobin), NATS in a process of its own (cmd/jitid-nats) and CPU time for
// benchmarks (cputime).
//
// It is a module of its own so that the servers it embeds (nats-server)
// stay out of the modules that production code imports.
package testkit
