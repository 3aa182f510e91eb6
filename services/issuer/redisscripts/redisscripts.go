// Package redisscripts holds the Lua scripts of the issuer's Redis store,
// one .lua file each, and the names they share with the Go side: the
// fields of a credential hash, the parts of key names, the fields of an
// outbox entry and the members of revocation marks.
//
// A script names no field in a string literal: it writes F.Written,
// K.Cred, E.ID or M.Agent, and Load writes in the value of the constant
// here (FieldWritten, KeyCred, EntryID, MarkAgent), so that a name is
// defined once. A name not defined here makes Load fail.
//
// Every script file opens with its contract: the keys (KEYS) and arguments
// (ARGV) it takes, by name, in order. "[a b]" are given together or not at
// all, "{a b}..." come once per item, "a..." is the rest. The Go wrapper
// of each script builds KEYS and ARGV in that order; a test of the store
// checks that the two agree.
//
// The package is not internal so that the benchmark suite can run the same
// scripts as the issuer.
package redisscripts

import (
	"embed"
	"fmt"
	"regexp"
	"strings"
)

//go:embed *.lua lib/*.lua
var files embed.FS

// Script is one script, ready to load into Redis.
type Script struct {
	// Name is the script's file, e.g. "issue.lua".
	Name string
	// Keys and Args are its contract, as its file states it after "KEYS:"
	// and "ARGV:".
	Keys, Args string
	// Source is what Redis runs: the library files the script uses, then
	// the script, with every name written in.
	Source string
}

// The store's scripts.
var (
	// Issue writes a credential with its indexes, schedule and events.
	Issue = mustLoad("issue.lua", "lib/marked.lua")
	// Use counts one presentation of a use-limited credential.
	Use = mustLoad("use.lua", "lib/marked.lua")
	// Mark writes a revocation mark in one shard.
	Mark = mustLoad("mark.lua")
	// Revoke revokes credentials of one shard with their events.
	Revoke = mustLoad("revoke.lua", "lib/revoke.lua")
	// Complete revokes a task's credentials and marks it completed.
	Complete = mustLoad("complete.lua", "lib/revoke.lua")
	// Sweep moves the expired events of credentials due to the outbox.
	Sweep = mustLoad("sweep.lua")
	// Quota holds a place for a credential in its delegator's quota.
	Quota = mustLoad("quota.lua")
)

// All returns every script of the store.
func All() []Script {
	return []Script{Issue, Use, Mark, Revoke, Complete, Sweep, Quota}
}

// nameRef matches a name a script uses: table and name.
var nameRef = regexp.MustCompile(`\b([FKEM])\.([A-Za-z]+)\b`)

// Load reads the script file name after the library files it uses, and
// writes the names in. It fails when a file is missing, when the script
// does not state its KEYS and ARGV, or when it uses an undefined name.
func Load(name string, libs ...string) (Script, error) {
	s := Script{Name: name}
	var b strings.Builder
	for _, f := range append(libs, name) {
		src, err := files.ReadFile(f)
		if err != nil {
			return Script{}, fmt.Errorf("redisscripts: %w", err)
		}
		b.Write(src)
	}
	src, err := files.ReadFile(name)
	if err != nil {
		return Script{}, fmt.Errorf("redisscripts: %w", err)
	}
	for line := range strings.Lines(string(src)) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "-- KEYS:"); ok {
			s.Keys = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "-- ARGV:"); ok {
			s.Args = strings.TrimSpace(v)
		}
	}
	if s.Keys == "" || s.Args == "" {
		return Script{}, fmt.Errorf("redisscripts: %s states no KEYS or no ARGV", name)
	}
	if s.Source, err = writeNames(b.String()); err != nil {
		return Script{}, fmt.Errorf("redisscripts: %s: %w", name, err)
	}
	return s, nil
}

// writeNames replaces every name src uses with its value, quoted.
func writeNames(src string) (string, error) {
	var undefined []string
	out := nameRef.ReplaceAllStringFunc(src, func(ref string) string {
		m := nameRef.FindStringSubmatch(ref)
		v, ok := names[m[1]][m[2]]
		if !ok {
			undefined = append(undefined, ref)
			return ref
		}
		return "'" + v + "'"
	})
	if len(undefined) > 0 {
		return "", fmt.Errorf("undefined names %v", undefined)
	}
	return out, nil
}

func mustLoad(name string, libs ...string) Script {
	s, err := Load(name, libs...)
	if err != nil {
		panic(err)
	}
	return s
}
