package subjecttoken_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// idpBinary is the jitid-idp program, built once per test binary from the
// dev module; idpBuildErr says why it did not build.
var idpBinary, idpBuildErr = "", error(nil)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "subjecttoken-idp")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	idpBinary, idpBuildErr = buildIDP(dir)
	code := m.Run()
	_ = os.RemoveAll(dir) // a temporary directory: the exit code is the tests'
	os.Exit(code)
}

func buildIDP(dir string) (string, error) {
	// The dev module is found through the workspace, never by a relative
	// path out of this module.
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/jitid/jitid/dev").Output()
	if err != nil {
		return "", fmt.Errorf("locate the dev module: %w", err)
	}
	bin := filepath.Join(dir, "jitid-idp")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/jitid-idp")
	cmd.Dir = strings.TrimSpace(string(out))
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/jitid-idp: %w\n%s", err, b)
	}
	return bin, nil
}

// idpUser is one entry of the provider's users file.
type idpUser struct {
	ID           string         `json:"id"`
	ClientID     string         `json:"client_id"`
	ClientSecret string         `json:"client_secret"`
	Audience     []string       `json:"audience"`
	Groups       []string       `json:"groups,omitempty"`
	Roles        []string       `json:"roles,omitempty"`
	AMR          []string       `json:"amr,omitempty"`
	ACR          string         `json:"acr,omitempty"`
	AuthAge      string         `json:"auth_age,omitempty"`
	Zoneinfo     string         `json:"zoneinfo,omitempty"`
	Claims       map[string]any `json:"claims,omitempty"`
}

// idp is a running jitid-idp process.
type idp struct {
	t      testing.TB
	cmd    *exec.Cmd
	issuer string
	addr   string

	mu    sync.Mutex
	lines []map[string]any
	grew  chan struct{} // closed and replaced whenever a log line arrives
	done  chan struct{} // closed when the log ends (the process exited)
}

// startIDP runs jitid-idp on 127.0.0.1:0 with users and extra flags, and
// waits for its "serving" line.
func startIDP(t testing.TB, users []idpUser, flags ...string) *idp {
	t.Helper()
	if idpBuildErr != nil {
		t.Fatal(idpBuildErr)
	}
	b, err := json.Marshal(map[string]any{"users": users})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-users", file, "-http", "127.0.0.1:0"}, flags...)
	p := &idp{t: t, cmd: exec.Command(idpBinary, args...), grew: make(chan struct{}), done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.readLog(stderr)
	t.Cleanup(p.Stop)
	serving := p.waitLog("serving", 30*time.Second)
	p.addr, _ = serving["http"].(string)
	p.issuer, _ = serving["issuer"].(string)
	if p.addr == "" || p.issuer == "" {
		t.Fatalf("serving line without http or issuer: %v", serving)
	}
	return p
}

func (p *idp) readLog(r io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			line = map[string]any{"msg": sc.Text()}
		}
		p.mu.Lock()
		p.lines = append(p.lines, line)
		close(p.grew)
		p.grew = make(chan struct{})
		p.mu.Unlock()
	}
}

// waitLog waits for the first log line with msg and returns it; earlier
// lines count.
func (p *idp) waitLog(msg string, timeout time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if l["msg"] == msg {
				p.mu.Unlock()
				return l
			}
		}
		grew := p.grew
		p.mu.Unlock()
		select {
		case <-grew:
		case <-p.done:
			p.t.Fatalf("jitid-idp exited before logging %q: %v", msg, p.log())
		case <-deadline:
			p.t.Fatalf("jitid-idp did not log %q within %v: %v", msg, timeout, p.log())
		}
	}
}

func (p *idp) log() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.lines...)
}

// Stop ends the process and waits for it.
func (p *idp) Stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	_ = p.cmd.Wait()
}

// Rotate makes the provider rotate its signing key and waits until it has.
func (p *idp) Rotate() {
	p.t.Helper()
	before := p.count("rotated signing key")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for p.count("rotated signing key") == before {
		p.mu.Lock()
		grew := p.grew
		p.mu.Unlock()
		select {
		case <-grew:
		case <-deadline:
			p.t.Fatalf("jitid-idp did not rotate its key: %v", p.log())
		}
	}
}

func (p *idp) count(msg string) int {
	n := 0
	for _, l := range p.log() {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

// tokens are the provider's token endpoint response.
type tokens struct {
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
}

// Tokens gets u's access token and ID token from the real token endpoint,
// at the bound address: the issuer URL may name another provider.
func (p *idp) Tokens(u idpUser) tokens {
	p.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost,
		"http://"+p.addr+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(u.ClientID), url.QueryEscape(u.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("token endpoint: %s: %s", resp.Status, body)
	}
	var tok tokens
	if err := json.Unmarshal(body, &tok); err != nil {
		p.t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.IDToken == "" {
		p.t.Fatalf("token response without an access token or an ID token: %s", body)
	}
	return tok
}

func httpGet(u string) ([]byte, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return io.ReadAll(resp.Body)
}
