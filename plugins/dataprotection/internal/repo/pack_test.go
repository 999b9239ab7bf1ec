package repo

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"
)

func contextCancelled(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithCancel(t.Context())
}

// buildPack returns a pack of blobs of the given lengths (bytes are
// filler: only the layout matters here).
func buildPack(lengths ...int) ([]byte, []packEntry) {
	pack := []byte(packHeaderMagic)
	var entries []packEntry
	for i, n := range lengths {
		entries = append(entries, packEntry{id: Hash([]byte{byte(i)}), typ: DataBlob, offset: uint32(len(pack)), length: uint32(n), rawLen: uint32(2 * n)})
		pack = append(pack, bytes.Repeat([]byte{byte(i)}, n)...)
	}
	return append(pack, encodeTrailer(entries)...), entries
}

func TestReadTrailer(t *testing.T) {
	good, entries := buildPack(10, 1, 300)
	tests := []struct {
		name string
		pack func() []byte
		want string // "" = valid
	}{
		{"valid", func() []byte { return good }, ""},
		{"no blobs", func() []byte { p, _ := buildPack(); return p }, ""},
		{"too short", func() []byte { return good[:10] }, "shorter"},
		{"bad header", func() []byte { p := bytes.Clone(good); p[0] = 'X'; return p }, "header magic"},
		{"truncated", func() []byte { return good[:len(good)-1] }, "footer magic"},
		{"count too large", func() []byte {
			p := bytes.Clone(good)
			binary.LittleEndian.PutUint32(p[len(p)-16:], 1000)
			return p
		}, "more than a pack"},
		{"checksum", func() []byte { p := bytes.Clone(good); p[len(p)-20] ^= 1; return p }, "checksum"},
		{"gap before trailer", func() []byte {
			p := append([]byte(nil), good[:len(good)-len(encodeTrailer(entries))]...)
			p = append(p, 0)
			return append(p, encodeTrailer(entries)...)
		}, "trailer starts"},
		{"overlap", func() []byte {
			e := append([]packEntry(nil), entries...)
			e[1].offset--
			return append(append([]byte(nil), good[:len(good)-len(encodeTrailer(entries))]...), encodeTrailer(e)...)
		}, "at offset"},
		{"bad type", func() []byte {
			e := append([]packEntry(nil), entries...)
			e[0].typ = 7
			return append(append([]byte(nil), good[:len(good)-len(encodeTrailer(entries))]...), encodeTrailer(e)...)
		}, "unknown blob type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.pack()
			got, id, err := readTrailer(bytes.NewReader(p), int64(len(p)))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.name == "valid" && len(got) != len(entries) {
					t.Fatalf("%d entries, want %d", len(got), len(entries))
				}
				if id != Hash(p[len(p)-len(got)*entrySize-packFooterSize:]) {
					t.Fatal("pack id is not the hash of the trailer")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestIndexEncoding(t *testing.T) {
	pack, entries := buildPack(5, 7)
	b := encodeIndex(int64(len(pack)), entries)
	size, got, err := decodeIndex(b)
	if err != nil || size != int64(len(pack)) || len(got) != 2 || got[1] != entries[1] {
		t.Fatalf("round trip: %d, %v, %v", size, got, err)
	}
	for name, mutate := range map[string]func([]byte){
		"magic":    func(b []byte) { b[0] = 'x' },
		"checksum": func(b []byte) { b[len(b)-1] ^= 1 },
		"entry":    func(b []byte) { b[indexHeadSize+5] ^= 1 },
	} {
		c := bytes.Clone(b)
		mutate(c)
		if _, _, err := decodeIndex(c); err == nil {
			t.Errorf("%s damaged: decoded", name)
		}
	}
	if _, _, err := decodeIndex(b[:10]); err == nil {
		t.Error("short index decoded")
	}
}
