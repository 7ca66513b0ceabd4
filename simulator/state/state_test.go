package state

import (
	"fmt"
	"testing"
)

// TestCommitMetaKeepsFailedCountsShort: failed counts per source round-trip, and with very many
// failing sources the metadata stays under Kafka's 4096-byte limit with the total preserved.
func TestCommitMetaKeepsFailedCountsShort(t *testing.T) {
	m := CommitMeta{Run: "r-1", Loop: 2, Failed: map[string]int64{"ne1": 3, "ne2": 5}}
	got, ok := DecodeCommitMeta(m.Encode())
	if !ok || got.Run != "r-1" || got.Loop != 2 || got.Failed["ne1"] != 3 || got.Failed["ne2"] != 5 {
		t.Fatalf("round trip: %q -> %+v", m.Encode(), got)
	}
	many := CommitMeta{Run: "r-1", Failed: map[string]int64{}}
	var total int64
	for i := range 2000 {
		many.Failed[fmt.Sprintf("source-with-a-long-name-%05d", i)] = int64(i + 1)
		total += int64(i + 1)
	}
	enc := many.Encode()
	if len(enc) >= 4096 {
		t.Fatalf("metadata is %d bytes, want < 4096", len(enc))
	}
	got, ok = DecodeCommitMeta(enc)
	if !ok || got.FailedTotal() != total || got.Failed[FailedOther] == 0 || got.Failed["source-with-a-long-name-01999"] != 2000 {
		t.Fatalf("decoded total %d (want %d), other %d, largest %d", got.FailedTotal(), total, got.Failed[FailedOther], got.Failed["source-with-a-long-name-01999"])
	}
}

// TestCommitMetaCarriesCutover round-trips a handover's cutover, with and without failed counts.
func TestCommitMetaCarriesCutover(t *testing.T) {
	for _, m := range []CommitMeta{
		{Run: "r1", Loop: 2, Cutover: 1764643200123456789},
		{Run: "r1", Loop: 0, Cutover: 5, Failed: map[string]int64{"a": 3}},
		{Run: "r1"},
	} {
		got, ok := DecodeCommitMeta(m.Encode())
		if !ok || got.Run != m.Run || got.Loop != m.Loop || got.Cutover != m.Cutover || len(got.Failed) != len(m.Failed) {
			t.Fatalf("%+v encoded as %s decoded as %+v (%v)", m, m.Encode(), got, ok)
		}
	}
}
