package host

import (
	"context"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host/api"
)

// SetBeforeParse makes every reload of file content call f with the reload
// lock held, just before it parses the content (reloadState.beforeParse).
// Call it before anything can reload: before Start or Watch.
func SetBeforeParse(h *Host, f func(source string, content []byte)) { h.reload.beforeParse = f }

// ReloadChange is what Watch does with a change the watcher delivered.
func ReloadChange(ctx context.Context, h *Host, c config.Change) ReloadResult {
	return h.reloadChange(ctx, c)
}

// APIRoutes returns the routes of the host's API.
func APIRoutes(h *Host) []api.Route { return h.api.Routes() }
