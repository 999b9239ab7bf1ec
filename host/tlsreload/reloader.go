package tlsreload

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/datawarehouse/dw/config"
)

// Defaults of Options.
const (
	// DefaultSettle is the quiet time after the last file event before the
	// files are read.
	DefaultSettle = 100 * time.Millisecond
	// DefaultPollInterval is the period of the hash poll.
	DefaultPollInterval = 5 * time.Second
	// DefaultPairGrace is how long a key that does not match its
	// certificate (or a missing or empty file) is waited out before it is
	// reported as an error.
	DefaultPairGrace = 2 * time.Second

	// settleCap bounds how long a steady stream of events delays a read,
	// in settle windows.
	settleCap = 10
)

// Options configure a Reloader.
type Options struct {
	// TLS is the server.tls section; TLS.Enabled() must be true.
	TLS config.TLS
	// Logger receives the reloader's log; nil means none.
	Logger hclog.Logger
	// Settle, PollInterval and PairGrace: 0 means the default; a negative
	// PollInterval disables the poll.
	Settle, PollInterval, PairGrace time.Duration
	// DisableNotify watches by polling only (tests of the poll).
	DisableNotify bool

	now func() time.Time // tests
}

// Status is what the reloader serves and the last problem it found, for
// operators (GET /v1/config shows it).
type Status struct {
	CertFile     string `json:"cert_file"`
	KeyFile      string `json:"key_file"`
	ClientCAFile string `json:"client_ca_file,omitempty"`
	MinVersion   string `json:"min_version"`
	// Serial (hex), Subject, Names, NotBefore and NotAfter describe the
	// served leaf certificate.
	Serial    string    `json:"serial"`
	Subject   string    `json:"subject"`
	Names     []string  `json:"names"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// LoadedAt is when the served pair was put in service.
	LoadedAt time.Time `json:"loaded_at"`
	// LastError is why the last change of the files was rejected (the
	// served pair stayed); empty when the files on disk are served.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// Reloader serves a certificate pair that follows its files. New loads
// it; Start watches the files; Close stops watching. See the package doc.
type Reloader struct {
	opts    Options
	log     hclog.Logger
	base    *tls.Config
	cur     atomic.Pointer[state]
	metrics metrics

	// mu serializes checks (the watcher's and Use's) and guards what
	// follows.
	mu        sync.Mutex
	spec      config.TLS
	seen      [sha256.Size]byte // the contents last judged
	waiting   bool              // an incomplete pair is given PairGrace
	lastErr   string
	lastErrAt time.Time

	poke    chan struct{} // the files changed: watch their folders
	grace   chan struct{} // start the PairGrace timer
	stop    context.CancelFunc
	done    chan struct{}
	started bool
}

type metrics struct {
	reloads    *prometheus.CounterVec
	expiry     prometheus.Gauge
	successful prometheus.Gauge
}

// New loads the pair of opts.TLS and returns a Reloader serving it; it
// fails with an *Error naming the config key when the files cannot be
// served. It starts nothing.
func New(opts Options) (*Reloader, error) {
	if !opts.TLS.Enabled() {
		return nil, errors.New("tls reloader: server.tls.cert_file is empty")
	}
	if opts.Settle <= 0 {
		opts.Settle = DefaultSettle
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.PairGrace <= 0 {
		opts.PairGrace = DefaultPairGrace
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	r := &Reloader{
		opts: opts,
		log:  opts.Logger,
		spec: opts.TLS,
		poke: make(chan struct{}, 1),
		// Buffered: check sends while holding mu, the loop receives.
		grace: make(chan struct{}, 1),
		done:  make(chan struct{}),
		metrics: metrics{
			reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "dw_tls_reloads_total",
				Help: "Changes of the API's certificate, key or client CA files, by result: ok (put in service) or error (rejected; the previous pair is still served).",
			}, []string{"result"}),
			expiry: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "dw_tls_certificate_expiry_timestamp_seconds",
				Help: "When the API's served certificate expires (its NotAfter), in seconds since the epoch.",
			}),
			successful: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "dw_tls_last_reload_successful",
				Help: "Whether the API serves the certificate files as they are on disk (1), or rejected their last change (0).",
			}),
		},
	}
	r.metrics.reloads.WithLabelValues("ok")
	r.metrics.reloads.WithLabelValues("error")
	st, err := r.load(opts.TLS)
	if err != nil {
		return nil, err
	}
	r.serve(st)
	r.seen = st.hash
	r.metrics.successful.Set(1)
	r.base = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return r.cur.Load().cfg, nil },
	}
	return r, nil
}

// load reads and checks the files of spec.
func (r *Reloader) load(spec config.TLS) (*state, error) {
	c, err := readFiles(spec)
	if err != nil {
		return nil, err
	}
	return build(spec, c, r.opts.now())
}

// serve puts st in service for new connections.
func (r *Reloader) serve(st *state) {
	r.cur.Store(st)
	r.metrics.expiry.Set(float64(st.leaf.NotAfter.Unix()))
}

// TLSConfig is the server configuration: every handshake gets the pair in
// service at that moment (tls.Config.GetConfigForClient).
func (r *Reloader) TLSConfig() *tls.Config { return r.base }

// Listener wraps inner so that its connections speak TLS.
func (r *Reloader) Listener(inner net.Listener) net.Listener { return tls.NewListener(inner, r.base) }

// Register registers the reloader's metrics on reg.
func (r *Reloader) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{r.metrics.reloads, r.metrics.expiry, r.metrics.successful} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register tls metrics: %w", err)
		}
	}
	return nil
}

// Candidate is a checked pair of new files, ready for Use.
type Candidate struct{ st *state }

// Prepare loads and checks the files of spec without serving them (a
// config reload's plan). spec must have TLS enabled.
func (r *Reloader) Prepare(spec config.TLS) (*Candidate, error) {
	if !spec.Enabled() {
		return nil, errors.New("tls reloader: server.tls.cert_file is empty")
	}
	st, err := r.load(spec)
	if err != nil {
		return nil, err
	}
	return &Candidate{st: st}, nil
}

// Use serves c and watches its files from now on (a config reload's
// commit).
func (r *Reloader) Use(c *Candidate) {
	r.mu.Lock()
	old := r.cur.Load()
	r.spec = c.st.spec
	r.seen = c.st.hash
	r.waiting = false
	r.serve(c.st)
	r.cleared()
	r.mu.Unlock()
	r.log.Info("tls files changed by a config reload", "cert_file", c.st.spec.CertFile, "key_file", c.st.spec.KeyFile,
		"client_ca_file", c.st.spec.ClientCAFile, "min_version", c.st.spec.MinVersion,
		"old_serial", serialHex(old.leaf), "serial", serialHex(c.st.leaf), "not_after", c.st.leaf.NotAfter)
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// Status describes the served pair and the last rejected change.
func (r *Reloader) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.cur.Load()
	s := Status{
		CertFile: st.spec.CertFile, KeyFile: st.spec.KeyFile, ClientCAFile: st.spec.ClientCAFile, MinVersion: st.spec.MinVersion,
		Serial: serialHex(st.leaf), Subject: st.leaf.Subject.CommonName, Names: slices.Clone(st.leaf.DNSNames),
		NotBefore: st.leaf.NotBefore, NotAfter: st.leaf.NotAfter, LoadedAt: st.at, LastError: r.lastErr,
	}
	if s.MinVersion == "" {
		s.MinVersion = "1.2"
	}
	for _, ip := range st.leaf.IPAddresses {
		s.Names = append(s.Names, ip.String())
	}
	if r.lastErr != "" {
		at := r.lastErrAt
		s.LastErrorAt = &at
	}
	return s
}

// Start watches the files in a goroutine until Close.
func (r *Reloader) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return
	}
	r.started = true
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	// Watch before Start returns, so that a change made after it is an
	// event; run then checks the files once, for a change made before.
	w := &notifier{log: r.log, disabled: r.opts.DisableNotify}
	w.sync(r.dirsLocked())
	go r.run(ctx, w)
}

// Close stops the watcher and waits for its goroutine; connections keep
// the pair they were made with. It is safe to call more than once, and
// without Start.
func (r *Reloader) Close() {
	r.mu.Lock()
	started := r.started
	r.mu.Unlock()
	if !started {
		return
	}
	r.stop()
	<-r.done
}

// check reads the files and serves them when they changed and are good.
// force reports an incomplete pair as an error at once (PairGrace is over).
func (r *Reloader) check(cause string, force bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	spec := r.spec
	c, err := readFiles(spec)
	// h identifies what was found: the contents, or the read error (so
	// that a file missing for good is reported once, not at every poll).
	h := sha256.Sum256([]byte("read: " + fmt.Sprint(err)))
	if err == nil {
		h = c.hash()
	}
	if h == r.seen && !force {
		return
	}
	var st *state
	if err == nil {
		st, err = build(spec, c, r.opts.now())
	}
	if err != nil {
		var fe *Error
		if errors.As(err, &fe) && fe.incomplete && !force {
			if !r.waiting {
				r.waiting = true
				r.log.Info("tls files changed but are incomplete; waiting for the rest of the rotation", "cause", cause, "error", err, "grace", r.opts.PairGrace)
				select {
				case r.grace <- struct{}{}:
				default:
				}
			}
			return
		}
		r.waiting = false
		r.seen = h
		r.rejected(cause, err)
		return
	}
	r.waiting = false
	r.seen = h
	old := r.cur.Load()
	if st.hash == old.hash {
		if r.lastErr != "" {
			r.log.Info("tls files are back to the served pair", "cause", cause, "serial", serialHex(old.leaf))
			r.cleared()
		}
		return
	}
	r.serve(st)
	r.cleared()
	r.metrics.reloads.WithLabelValues("ok").Inc()
	r.log.Info("tls certificate rotated: new connections get the new pair, open ones keep theirs", "cause", cause,
		"cert_file", spec.CertFile, "old_serial", serialHex(old.leaf), "serial", serialHex(st.leaf),
		"subject", describe(st.leaf), "not_after", st.leaf.NotAfter.UTC().Format(time.RFC3339))
}

// rejected reports a change of the files that cannot be served.
func (r *Reloader) rejected(cause string, err error) {
	key, file := "", ""
	var fe *Error
	if errors.As(err, &fe) {
		key, file = fe.Key, fe.Path
	}
	r.lastErr = err.Error()
	r.lastErrAt = r.opts.now()
	r.metrics.reloads.WithLabelValues("error").Inc()
	r.metrics.successful.Set(0)
	r.log.Error("tls files rejected; still serving the previous certificate", "cause", cause, "key", key, "file", file,
		"error", err, "serving_serial", serialHex(r.cur.Load().leaf))
}

// cleared records that the files on disk are served.
func (r *Reloader) cleared() {
	r.lastErr, r.lastErrAt = "", time.Time{}
	r.metrics.successful.Set(1)
}

// dirs are the folders to watch: each file's folder and, when it is a
// symbolic link, its target's folder. (Links further up a chain are
// caught by the poll.)
func (r *Reloader) dirs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dirsLocked()
}

// dirsLocked is dirs with mu held.
func (r *Reloader) dirsLocked() []string {
	spec := r.spec
	var out []string
	for _, p := range []string{spec.CertFile, spec.KeyFile, spec.ClientCAFile} {
		if p == "" {
			continue
		}
		out = append(out, filepath.Dir(p))
		if t, err := filepath.EvalSymlinks(p); err == nil {
			out = append(out, filepath.Dir(t))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// run is the watcher goroutine: fsnotify events on the files' folders
// (coalesced over Settle), the poll, Use's pokes and the PairGrace timer
// all lead to check.
func (r *Reloader) run(ctx context.Context, w *notifier) {
	defer close(r.done)
	defer w.close()
	r.check("start", false)

	settle, grace := stoppedTimer(), stoppedTimer()
	defer settle.Stop()
	defer grace.Stop()
	var first time.Time // first event of the pending burst
	schedule := func() {
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		wait := r.opts.Settle
		if deadline := first.Add(settleCap * r.opts.Settle); now.Add(wait).After(deadline) {
			wait = max(deadline.Sub(now), 0)
		}
		settle.Reset(wait)
	}
	var pollC <-chan time.Time
	if r.opts.PollInterval > 0 {
		t := time.NewTicker(r.opts.PollInterval)
		defer t.Stop()
		pollC = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.events():
			if !ok {
				w.fail(errors.New("event channel closed"))
				continue
			}
			r.log.Trace("tls watch event", "event", ev.String())
			schedule()
		case err, ok := <-w.errors():
			if !ok {
				err = errors.New("error channel closed")
			}
			w.fail(err)
			w.sync(r.dirs())
			schedule() // events may have been lost
		case <-r.poke:
			w.sync(r.dirs())
		case <-r.grace:
			grace.Reset(r.opts.PairGrace)
		case <-settle.C:
			first = time.Time{}
			r.check("event", false)
			w.sync(r.dirs()) // a symbolic link may point elsewhere now
		case <-grace.C:
			r.check("grace over", true)
		case <-pollC:
			w.sync(r.dirs())
			r.check("poll", false)
		}
	}
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// notifier is the fsnotify watcher of the files' folders, re-created
// after an error.
type notifier struct {
	log      hclog.Logger
	disabled bool
	w        *fsnotify.Watcher
	note     string // the last problem logged, to log it once
}

func (n *notifier) events() chan fsnotify.Event {
	if n.w == nil {
		return nil
	}
	return n.w.Events
}

func (n *notifier) errors() chan error {
	if n.w == nil {
		return nil
	}
	return n.w.Errors
}

// sync watches exactly dirs, creating the watcher if needed. A folder that
// cannot be watched (missing) is tried again at the next sync (every poll).
func (n *notifier) sync(dirs []string) {
	if n.disabled {
		return
	}
	if n.w == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			n.problem("tls watch: cannot create a file watcher; polling only until it can", err)
			return
		}
		n.w = w
	}
	have := n.w.WatchList()
	for _, d := range have {
		if !slices.Contains(dirs, d) {
			_ = n.w.Remove(d)
		}
	}
	for _, d := range dirs {
		if !slices.Contains(have, d) {
			if err := n.w.Add(d); err != nil {
				n.problem("tls watch: cannot watch a folder; polling it until it can", fmt.Errorf("%s: %w", d, err))
				return // the note stays: tried again at the next sync
			}
		}
	}
	if n.note != "" {
		n.log.Info("tls watch: watching the folders of the tls files again")
		n.note = ""
	}
}

// fail closes the watcher after an error (an overflow included); the next
// sync creates a new one.
func (n *notifier) fail(err error) {
	n.log.Warn("tls watch: file watcher error; re-creating it and reading the files", "error", err)
	n.close()
}

func (n *notifier) close() {
	if n.w != nil {
		_ = n.w.Close()
		n.w = nil
	}
}

func (n *notifier) problem(msg string, err error) {
	if err.Error() != n.note {
		n.log.Warn(msg, "error", err)
		n.note = err.Error()
	}
}
