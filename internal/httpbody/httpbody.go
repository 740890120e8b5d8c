// Package httpbody reads request bodies for the appliance's HTTP handlers:
// bounded, and strict about JSON, so a misspelt field is an error rather
// than silently ignored.
package httpbody

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ErrEmpty is returned for a body with nothing in it.
var ErrEmpty = errors.New("request body: empty")

// JSON decodes the body of r, at most limit bytes, into v: unknown fields
// and data after the object are errors.
func JSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	return read(w, r, limit, v, true)
}

// JSONAllowUnknown is JSON for a peer that may be newer than the appliance
// (an RC): fields the appliance does not know are skipped, anything else
// is as strict.
func JSONAllowUnknown(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	return read(w, r, limit, v, false)
}

func read(w http.ResponseWriter, r *http.Request, limit int64, v any, strict bool) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return ErrEmpty
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	// Not dec.More: it reports a stray '}' or ']' after the object as the
	// end of the input, and "{}}" would pass.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("request body: data after the JSON object")
	}
	return nil
}
