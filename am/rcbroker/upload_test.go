package rcbroker

import (
	"errors"
	"io"
	"net/http"
	"os"
	"syscall"
	"testing"

	"github.com/orbit-lab/netboot/am/apierr"
)

// TestUploadError: an upload the appliance could not write is its own
// fault, a full disk a 507 that says so; one cut short is the uploader's.
func TestUploadError(t *testing.T) {
	full := &os.PathError{Op: "write", Path: "/var/lib/netboot/images/.upload-x", Err: syscall.ENOSPC}
	for _, tc := range []struct {
		name       string
		werr, err  error
		wantStatus int
	}{
		{"disk full", full, full, http.StatusInsufficientStorage},
		{"quota", &os.PathError{Op: "write", Path: "f", Err: syscall.EDQUOT}, nil, http.StatusInsufficientStorage},
		{"I/O error", &os.PathError{Op: "write", Path: "f", Err: syscall.EIO}, nil, http.StatusInternalServerError},
		{"cut short", nil, io.ErrUnexpectedEOF, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err
			if err == nil {
				err = tc.werr
			}
			got := uploadError("x", 1234, tc.werr, err)
			if s := apierr.Status(got); s != tc.wantStatus {
				t.Errorf("status %d (%v), want %d", s, got, tc.wantStatus)
			}
			if tc.werr != nil && tc.wantStatus == http.StatusInternalServerError && !errors.Is(got, syscall.EIO) {
				t.Errorf("%v does not wrap the cause", got)
			}
		})
	}
}
