package repo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Pack and index file formats; FORMAT.md describes them byte by byte.
const (
	packHeaderMagic = "DWPACK\x00\x01" // 8 bytes: "DWPACK", 0, format version 1
	packFooterMagic = "DWPKEND1"       // last 8 bytes of a pack
	indexMagic      = "DWINDEX1"       // first 8 bytes of an index file

	packHeaderSize = len(packHeaderMagic)
	packFooterSize = 4 + 4 + len(packFooterMagic) // count, crc32c, magic
	indexHeadSize  = len(indexMagic) + 8 + 4      // magic, pack size, count
	entrySize      = 1 + 32 + 4 + 4 + 4           // type, id, offset, length, raw length

	// MaxBlobSize is the largest plaintext a blob may have.
	MaxBlobSize = 512 << 20
	// maxPackEntries bounds the blobs in one pack, so that a trailer (and
	// the memory needed to read one) stays below 6 MiB.
	maxPackEntries = 1 << 17
	// maxPackBytes keeps every offset and length within uint32.
	maxPackBytes = 1<<32 - 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// packEntry describes one blob in a pack.
type packEntry struct {
	id     ID
	typ    BlobType
	offset uint32 // from the start of the pack file
	length uint32 // compressed (stored) bytes
	rawLen uint32 // plaintext bytes
}

func appendEntry(b []byte, e packEntry) []byte {
	b = append(b, byte(e.typ))
	b = append(b, e.id[:]...)
	b = binary.LittleEndian.AppendUint32(b, e.offset)
	b = binary.LittleEndian.AppendUint32(b, e.length)
	return binary.LittleEndian.AppendUint32(b, e.rawLen)
}

// parseEntries decodes count entries from b (exactly count*entrySize bytes).
func parseEntries(b []byte, count int) ([]packEntry, error) {
	if len(b) != count*entrySize {
		return nil, fmt.Errorf("entry table is %d bytes, want %d for %d entries", len(b), count*entrySize, count)
	}
	entries := make([]packEntry, count)
	for i := range entries {
		p := b[i*entrySize:]
		e := &entries[i]
		e.typ = BlobType(p[0])
		copy(e.id[:], p[1:33])
		e.offset = binary.LittleEndian.Uint32(p[33:])
		e.length = binary.LittleEndian.Uint32(p[37:])
		e.rawLen = binary.LittleEndian.Uint32(p[41:])
		if !e.typ.valid() {
			return nil, fmt.Errorf("entry %d (blob %s): unknown blob type %d", i, e.id, p[0])
		}
		if e.rawLen > MaxBlobSize {
			return nil, fmt.Errorf("entry %d (blob %s): raw length %d exceeds the maximum %d", i, e.id, e.rawLen, MaxBlobSize)
		}
	}
	return entries, nil
}

// checkLayout verifies that the blobs of a pack of packSize bytes follow
// each other without gaps from the header to the trailer.
func checkLayout(entries []packEntry, packSize int64) error {
	if len(entries) > maxPackEntries {
		return fmt.Errorf("%d entries exceed the maximum %d", len(entries), maxPackEntries)
	}
	want := int64(packHeaderSize)
	for i, e := range entries {
		if int64(e.offset) != want {
			return fmt.Errorf("entry %d (blob %s) at offset %d, want %d", i, e.id, e.offset, want)
		}
		if e.length == 0 {
			return fmt.Errorf("entry %d (blob %s) has length 0", i, e.id)
		}
		want += int64(e.length)
	}
	if trailerAt := packSize - int64(len(entries)*entrySize+packFooterSize); want != trailerAt {
		return fmt.Errorf("blobs end at %d but the trailer starts at %d (pack of %d bytes)", want, trailerAt, packSize)
	}
	return nil
}

// encodeTrailer returns the trailer (entry table and footer) of a pack.
func encodeTrailer(entries []packEntry) []byte {
	b := make([]byte, 0, len(entries)*entrySize+packFooterSize)
	for _, e := range entries {
		b = appendEntry(b, e)
	}
	crc := crc32.Checksum(b, castagnoli)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	b = binary.LittleEndian.AppendUint32(b, crc)
	return append(b, packFooterMagic...)
}

// packID returns the name of a pack: the SHA-256 of its trailer (entry
// table and footer). The trailer holds every blob's ID, offset and length,
// so it identifies the pack's content; the blob bytes are checked through
// their own IDs on every read.
func packID(trailer []byte) ID { return Hash(trailer) }

// readTrailer reads and validates the header and trailer of a pack of
// size bytes and returns its entries and the pack ID the trailer gives.
// Errors describe the defect; callers wrap them with ErrCorrupt.
func readTrailer(r io.ReaderAt, size int64) ([]packEntry, ID, error) {
	if size < int64(packHeaderSize+packFooterSize) {
		return nil, ID{}, fmt.Errorf("pack is %d bytes, shorter than header and footer (%d)", size, packHeaderSize+packFooterSize)
	}
	if size > maxPackBytes {
		return nil, ID{}, fmt.Errorf("pack is %d bytes, larger than the maximum %d", size, int64(maxPackBytes))
	}
	var head [packHeaderSize]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return nil, ID{}, fmt.Errorf("read header: %w", err)
	}
	if string(head[:]) != packHeaderMagic {
		return nil, ID{}, errors.New("bad header magic (not a pack of format version 1)")
	}
	var foot [packFooterSize]byte
	if _, err := r.ReadAt(foot[:], size-int64(packFooterSize)); err != nil {
		return nil, ID{}, fmt.Errorf("read footer: %w", err)
	}
	if string(foot[8:]) != packFooterMagic {
		return nil, ID{}, errors.New("bad footer magic (pack truncated or not a pack)")
	}
	count := int(binary.LittleEndian.Uint32(foot[0:]))
	if count > maxPackEntries {
		return nil, ID{}, fmt.Errorf("footer names %d entries, more than the maximum %d", count, maxPackEntries)
	}
	tableLen := int64(count * entrySize)
	if tableLen > size-int64(packHeaderSize+packFooterSize) {
		return nil, ID{}, fmt.Errorf("footer names %d entries, more than a pack of %d bytes holds", count, size)
	}
	trailer := make([]byte, tableLen+int64(packFooterSize))
	if _, err := r.ReadAt(trailer, size-int64(len(trailer))); err != nil {
		return nil, ID{}, fmt.Errorf("read trailer: %w", err)
	}
	return parseTrailer(trailer, size)
}

// maxTrailerSize is the size of the largest valid trailer.
const maxTrailerSize = maxPackEntries*entrySize + packFooterSize

// parseTrailer validates the trailer (entry table and footer, the last
// len(trailer) bytes) of a pack of size bytes and returns its entries and
// the pack ID it gives. The header is not checked here.
func parseTrailer(trailer []byte, size int64) ([]packEntry, ID, error) {
	if len(trailer) < packFooterSize {
		return nil, ID{}, fmt.Errorf("%d bytes follow the blobs, fewer than a footer (%d)", len(trailer), packFooterSize)
	}
	foot := trailer[len(trailer)-packFooterSize:]
	if string(foot[8:]) != packFooterMagic {
		return nil, ID{}, errors.New("bad footer magic (pack truncated or not a pack)")
	}
	count := int(binary.LittleEndian.Uint32(foot[0:]))
	if count > maxPackEntries {
		return nil, ID{}, fmt.Errorf("footer names %d entries, more than the maximum %d", count, maxPackEntries)
	}
	if want := count*entrySize + packFooterSize; len(trailer) != want {
		return nil, ID{}, fmt.Errorf("footer names %d entries (a trailer of %d bytes), but %d bytes follow the blobs", count, want, len(trailer))
	}
	table := trailer[:count*entrySize]
	if crc32.Checksum(table, castagnoli) != binary.LittleEndian.Uint32(foot[4:]) {
		return nil, ID{}, errors.New("trailer checksum mismatch")
	}
	entries, err := parseEntries(table, count)
	if err != nil {
		return nil, ID{}, err
	}
	if err := checkLayout(entries, size); err != nil {
		return nil, ID{}, err
	}
	return entries, packID(trailer), nil
}

// encodeIndex returns the index file of a pack of packSize bytes.
func encodeIndex(packSize int64, entries []packEntry) []byte {
	b := make([]byte, 0, indexHeadSize+len(entries)*entrySize+4)
	b = append(b, indexMagic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(packSize))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = appendEntry(b, e)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeIndex parses and validates an index file.
func decodeIndex(b []byte) (packSize int64, entries []packEntry, err error) {
	if len(b) < indexHeadSize+4 {
		return 0, nil, fmt.Errorf("index is %d bytes, shorter than its header", len(b))
	}
	if string(b[:len(indexMagic)]) != indexMagic {
		return 0, nil, errors.New("bad index magic (not an index of format version 1)")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return 0, nil, errors.New("index checksum mismatch")
	}
	size := binary.LittleEndian.Uint64(b[8:])
	if size > maxPackBytes {
		return 0, nil, fmt.Errorf("index names a pack of %d bytes, larger than the maximum", size)
	}
	count := int(binary.LittleEndian.Uint32(b[16:]))
	if count > maxPackEntries {
		return 0, nil, fmt.Errorf("index names %d entries, more than the maximum %d", count, maxPackEntries)
	}
	entries, err = parseEntries(body[indexHeadSize:], count)
	if err != nil {
		return 0, nil, err
	}
	if err := checkLayout(entries, int64(size)); err != nil {
		return 0, nil, err
	}
	return int64(size), entries, nil
}
