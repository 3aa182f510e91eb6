package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Profile records the runtime profiles of policy, audit and issuer (started
// with Options.Pprof) while a workload runs: a CPU profile of each for d,
// taken at once, then each one's cumulative allocations. Files go to dir as
// <name>.<service>.cpu.pprof and <name>.<service>.allocs.pprof, for
// `go tool pprof`. It returns when the CPU profiles are written.
func (s *Suite) Profile(ctx context.Context, dir, name string, d time.Duration) error {
	if !s.opts.Pprof {
		return errors.New("suite: profiles need Options.Pprof")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // G301: profiles for the operator to read
		return err
	}
	secs := max(1, int(d/time.Second))
	admins := map[string]string{"issuer": s.IssuerAdmin, "policy": s.PolicyAdmin, "audit": s.AuditAdmin}
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(admins))
	for svc, addr := range admins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := filepath.Join(dir, name+"."+svc)
			cpu := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs)
			if err := fetch(ctx, cpu, base+".cpu.pprof"); err != nil {
				errs <- err
				return
			}
			if err := fetch(ctx, "http://"+addr+"/debug/pprof/allocs", base+".allocs.pprof"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: HTTP %s", url, strconv.Itoa(res.StatusCode))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		_ = f.Close()
		return fmt.Errorf("profile %s: %w", url, err)
	}
	return f.Close()
}
