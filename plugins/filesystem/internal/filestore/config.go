package filestore

import (
	"fmt"
	"maps"
	"math"
	"time"

	"github.com/datawarehouse/dw/plugins/filesystem/internal/device"
	"github.com/datawarehouse/dw/plugins/filesystem/internal/quota"
	"github.com/datawarehouse/dw/sdk/v6"
)

// Limits are filesystem's live limits (subsystems.filesystem.limits). The
// SDK decodes them strictly onto DefaultLimits and enforces the tags.
type Limits struct {
	// MaxQueueDepth bounds the operations that wait in the I/O queue; one
	// more is refused at once (429).
	MaxQueueDepth int `dw:"max_queue_depth" min:"1" max:"1000000" doc:"operations that may wait in the I/O queue; one more is refused at once (429)"`
	// QueueDepth is how many operations run on the device at once, by the
	// root's device class.
	QueueDepth QueueDepths `dw:"queue_depth" doc:"operations running on the device at once, by the root's device class"`
	// RedetectInterval is the time between probes of io_uring and O_DIRECT.
	RedetectInterval time.Duration `dw:"redetect_interval" min:"1s" max:"24h" doc:"time between probes of io_uring and O_DIRECT"`
	// MaxThrottleWait is how long a request over its caller's quota may
	// wait for it before it is refused (429); 0 refuses at once.
	MaxThrottleWait time.Duration `dw:"max_throttle_wait" max:"1h" doc:"longest wait of a request over its caller's quota before it is refused (429); 0 refuses at once"`
	// Quota are the per-caller rates.
	Quota QuotaLimits `dw:"quota" doc:"per-caller rates (token buckets with one second of burst)"`
}

// QueueDepths are the dispatch depths per device class.
type QueueDepths struct {
	NVMe int `dw:"nvme" min:"1" max:"65536" doc:"dispatch slots when the root is on an NVMe device (or in memory)"`
	SSD  int `dw:"ssd" min:"1" max:"65536" doc:"dispatch slots when the root is on an SSD (or a virtio disk)"`
	HDD  int `dw:"hdd" min:"1" max:"65536" doc:"dispatch slots when the root is on a rotational disk"`
}

// For returns the depth of class c.
func (d QueueDepths) For(c device.Class) int {
	switch c {
	case device.NVMe:
		return d.NVMe
	case device.HDD:
		return d.HDD
	}
	return d.SSD
}

// QuotaLimits are limits.quota.
type QuotaLimits struct {
	// Default applies to every caller without an entry in Callers.
	Default Rate `dw:"default" doc:"the rate of every caller without an entry in callers"`
	// Callers override Default by caller name (the auth token's name, or
	// "anonymous").
	Callers map[string]Rate `dw:"callers" doc:"rates by caller name (the token's name, or anonymous), overriding default"`
}

// Rate is one caller's quota; 0 means unlimited.
type Rate struct {
	BytesPerSecond sdk.Size `dw:"bytes_per_second" max:"1PiB" doc:"bytes read and written per second; 0 is unlimited"`
	OpsPerSecond   float64  `dw:"ops_per_second" max:"10000000" doc:"operations per second; 0 is unlimited"`
}

// DefaultLimits are the limits of DESIGN.md.
func DefaultLimits() Limits {
	return Limits{
		MaxQueueDepth:    1024,
		QueueDepth:       QueueDepths{NVMe: 128, SSD: 32, HDD: 8},
		RedetectInterval: 5 * time.Minute,
		MaxThrottleWait:  2 * time.Second,
		Quota:            QuotaLimits{Callers: map[string]Rate{}},
	}
}

// Validate applies the rules the tags cannot: rates are not negative.
func (l *Limits) Validate() error {
	var de sdk.DecodeError
	check := func(path string, r Rate) {
		if r.BytesPerSecond < 0 {
			de.Problems = append(de.Problems, sdk.FieldProblem{Path: path + ".bytes_per_second",
				Message: fmt.Sprintf("%d is negative; use 0 for unlimited or a size such as 10MiB", r.BytesPerSecond)})
		}
		if r.OpsPerSecond < 0 || math.IsNaN(r.OpsPerSecond) || math.IsInf(r.OpsPerSecond, 0) {
			de.Problems = append(de.Problems, sdk.FieldProblem{Path: path + ".ops_per_second",
				Message: fmt.Sprintf("%g is not a rate; use a positive number, or 0 for unlimited", r.OpsPerSecond)})
		}
	}
	check("quota.default", l.Quota.Default)
	for name, r := range l.Quota.Callers {
		check(sdk.KeyPath("quota.callers", name), r)
	}
	if len(de.Problems) > 0 {
		return &de
	}
	return nil
}

var _ sdk.Validator = (*Limits)(nil)

// quotaConfig converts the quota limits for package quota.
func (l Limits) quotaConfig() quota.Config {
	rate := func(r Rate) quota.Rate {
		return quota.Rate{BytesPerSecond: int64(r.BytesPerSecond), OpsPerSecond: r.OpsPerSecond}
	}
	callers := make(map[string]quota.Rate, len(l.Quota.Callers))
	for name, r := range maps.All(l.Quota.Callers) {
		callers[name] = rate(r)
	}
	return quota.Config{Default: rate(l.Quota.Default), Callers: callers, MaxWait: l.MaxThrottleWait}
}

// Settings are filesystem's start-time settings (subsystems.filesystem
// without enabled and limits). A change restarts the plugin.
type Settings struct {
	// Root is the folder files live under, relative to data_dir unless
	// absolute. It is created if missing.
	Root string `dw:"root" doc:"folder files live under, relative to data_dir unless absolute; created if missing"`
	// DeviceClass is auto (detect the root's device) or nvme, ssd or hdd.
	DeviceClass string `dw:"device_class" enum:"auto,nvme,ssd,hdd" doc:"the root's device class, which picks queue_depth; auto detects it"`
}

// defaultSettings are DESIGN.md's.
func defaultSettings() Settings { return Settings{Root: "files", DeviceClass: "auto"} }

// DefaultSettings declares the settings (sdk.SettingsDeclarer): the
// defaults Configure decodes them onto.
func (s *Service) DefaultSettings() any { return defaultSettings() }

var _ sdk.SettingsDeclarer = (*Service)(nil)
