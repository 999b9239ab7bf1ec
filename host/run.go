package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host/supervisor"
)

// Watch keeps the host in step with its files until ctx ends: the config
// file (every settled change is reloaded as one transaction, see Reload)
// and plugins.dir (binaries that appear, change or go are loaded, swapped
// or stopped). Without a config file (embedded defaults) only plugins.dir
// is watched. It returns when both watchers have stopped. Call it after
// Start.
//
// A reload of a file change parses and applies exactly the bytes the
// watcher read and hashed (config.Change), never the file again: by then
// the file may hold a later save (the watcher delivers it next) or be
// empty in the middle of a truncate-then-write. Content whose hash is the
// one in force (ConfigInfo.FileHash: read at start, or by a SIGHUP or API
// reload) reloads nothing.
func (h *Host) Watch(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	if path := h.opts.ConfigPath; path != "" {
		// The initial hash is that of the content in force: the first
		// read is delivered (and reloaded) only when the file changed
		// since it was read — exactly the change that must not be
		// missed. When it is not known (""), the first read is delivered
		// and its reload changes nothing unless the file changed.
		var inForce string
		if snap := h.reload.cur.Load(); snap != nil {
			inForce = snap.fileHash
		}
		w, err := config.NewWatcher(config.WatchOptions{Path: path, InitialHash: inForce, Logger: h.logger.Named("config")})
		if err != nil {
			return fmt.Errorf("watch config file: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := w.Run(ctx, func(c config.Change) {
				h.reloadChange(ctx, c)
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				h.logger.Error("config file watcher stopped", "error", err)
				fail(err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := h.plugins.WatchDir(ctx, supervisor.DirWatchOptions{Logger: h.logger.Named("plugins")})
		if err != nil && !errors.Is(err, context.Canceled) {
			h.logger.Error("plugins.dir watcher stopped", "error", err)
			fail(err)
		}
	}()
	wg.Wait()
	return errors.Join(errs...)
}

// Run is `dw serve`: start the host, watch its files, reload on SIGHUP,
// and stop gracefully on SIGINT or SIGTERM (or when ctx ends).
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	h, err := New(cfg, opts)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if err := h.Start(ctx); err != nil {
		return err
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_ = h.Watch(watchCtx)
	}()

loop:
	for {
		select {
		case <-hup:
			h.logger.Info("SIGHUP: reloading the config file and rescanning plugins.dir")
			h.ReloadFile(ctx, "SIGHUP")
			if err := h.plugins.Rescan(ctx); err != nil {
				h.logger.Error("rescan of plugins.dir failed", "error", err)
			}
		case <-ctx.Done():
			h.logger.Info("shutting down", "reason", "signal")
			break loop
		case <-h.Done():
			h.logger.Error("http server failed", "error", h.Err())
			break loop
		}
	}
	stopWatch()
	<-watched
	sctx, cancel := context.WithTimeout(context.Background(), h.opts.DrainTimeout+15*time.Second)
	defer cancel()
	if err := h.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return h.Err()
}
