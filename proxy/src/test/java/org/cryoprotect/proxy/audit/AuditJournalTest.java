package org.cryoprotect.proxy.audit;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The journal alone: durable appends in order, read back, torn tails, checkpoints, restarts. */
class AuditJournalTest {
  @TempDir Path dir;

  static AuditRecord record(String statement) {
    return new AuditRecord(
        0,
        1_764_676_800_000_000L,
        "sub",
        "jti",
        "service_write",
        List.of("cryo:write"),
        "127.0.0.1",
        "app",
        statement,
        null,
        1.5,
        1L,
        null);
  }

  static void appendAll(AuditJournal j, int from, int to) throws Exception {
    List<CompletableFuture<Void>> done = new ArrayList<>();
    for (int i = from; i < to; i++) {
      CompletableFuture<Void> f = new CompletableFuture<>();
      j.append(
          record("statement " + i),
          e -> {
            if (e == null) {
              f.complete(null);
            } else {
              f.completeExceptionally(e);
            }
          });
      done.add(f);
    }
    CompletableFuture.allOf(done.toArray(CompletableFuture[]::new)).get(10, TimeUnit.SECONDS);
  }

  static List<String> statements(List<AuditJournal.Entry> entries) {
    return entries.stream().map(e -> e.record().statement()).toList();
  }

  @Test
  void recordsAreReadBackInOrderWithTheirSequence() throws Exception {
    try (AuditJournal j = AuditJournal.open(dir, 1 << 20)) {
      appendAll(j, 0, 100);
      List<AuditJournal.Entry> entries = j.read(j.checkpoint(), 1_000);
      assertThat(entries).hasSize(100);
      assertThat(entries.get(0).record().seq()).isEqualTo(1);
      assertThat(entries.get(99).record().seq()).isEqualTo(100);
      assertThat(entries.get(7).record().scopes()).containsExactly("cryo:write");
      assertThat(j.pendingRecords()).isEqualTo(100);
      assertThat(j.read(j.checkpoint(), 10)).hasSize(10);
    }
  }

  @Test
  void aCheckpointSurvivesARestartAndTheSequenceGoesOn() throws Exception {
    String id;
    try (AuditJournal j = AuditJournal.open(dir, 1 << 20)) {
      id = j.id();
      appendAll(j, 0, 10);
      List<AuditJournal.Entry> first = j.read(j.checkpoint(), 4);
      long bytes = first.stream().mapToLong(AuditJournal.Entry::bytes).sum();
      j.checkpoint(first.get(3).next(), 4, bytes);
    }
    try (AuditJournal j = AuditJournal.open(dir, 1 << 20)) {
      assertThat(j.id()).isEqualTo(id);
      assertThat(j.pendingRecords()).isEqualTo(6);
      List<AuditJournal.Entry> rest = j.read(j.checkpoint(), 100);
      assertThat(statements(rest).get(0)).isEqualTo("statement 4");
      appendAll(j, 10, 12);
      List<AuditJournal.Entry> all = j.read(j.checkpoint(), 100);
      assertThat(all).hasSize(8);
      assertThat(all.get(7).record().seq()).isEqualTo(12);
    }
  }

  @Test
  void aTornLastRecordIsCutOffAtTheNextStart() throws Exception {
    try (AuditJournal j = AuditJournal.open(dir, 1 << 20)) {
      appendAll(j, 0, 5);
    }
    Path segment;
    try (Stream<Path> files = Files.list(dir)) {
      segment =
          files.filter(f -> f.getFileName().toString().startsWith("segment-")).findFirst().get();
    }
    long size = Files.size(segment);
    try (FileChannel c = FileChannel.open(segment, StandardOpenOption.WRITE)) {
      c.truncate(size - 3); // a crash in the middle of the last write
    }
    try (AuditJournal j = AuditJournal.open(dir, 1 << 20)) {
      assertThat(statements(j.read(j.checkpoint(), 100)))
          .containsExactly("statement 0", "statement 1", "statement 2", "statement 3");
      appendAll(j, 5, 6);
      List<AuditJournal.Entry> entries = j.read(j.checkpoint(), 100);
      assertThat(entries).hasSize(5);
      assertThat(entries.get(4).record().seq()).isEqualTo(5); // the torn one's seq is reused
    }
  }

  @Test
  void segmentsBehindTheCheckpointAreDeleted() throws Exception {
    try (AuditJournal j = AuditJournal.open(dir, 1 << 30)) {
      String big = "x".repeat(1 << 20);
      List<CompletableFuture<Void>> done = new ArrayList<>();
      for (int i = 0; i < 70; i++) { // 70 MiB: more than one segment
        CompletableFuture<Void> f = new CompletableFuture<>();
        j.append(record(big), e -> f.complete(null));
        done.add(f);
      }
      CompletableFuture.allOf(done.toArray(CompletableFuture[]::new)).get(60, TimeUnit.SECONDS);
      assertThat(segments()).isGreaterThanOrEqualTo(2);
      AuditJournal.Position at = j.checkpoint();
      int records = 0;
      long bytes = 0;
      List<AuditJournal.Entry> batch;
      while (!(batch = j.read(at, 10)).isEmpty()) {
        at = batch.get(batch.size() - 1).next();
        records += batch.size();
        bytes += batch.stream().mapToLong(AuditJournal.Entry::bytes).sum();
      }
      assertThat(records).isEqualTo(70);
      j.checkpoint(at, records, bytes);
      assertThat(segments()).isEqualTo(1);
      assertThat(j.pendingBytes()).isZero();
      assertThat(j.full()).isFalse();
    }
  }

  @Test
  void aJournalPastItsBoundIsFull() throws Exception {
    try (AuditJournal j = AuditJournal.open(dir, 1 << 20)) {
      assertThat(j.full()).isFalse();
      String big = "y".repeat(300_000);
      for (int i = 0; i < 4; i++) {
        CompletableFuture<Void> f = new CompletableFuture<>();
        j.append(record(big), e -> f.complete(null));
        f.get(10, TimeUnit.SECONDS);
      }
      assertThat(j.full()).isTrue();
    }
  }

  private long segments() throws Exception {
    try (Stream<Path> files = Files.list(dir)) {
      return files.filter(f -> f.getFileName().toString().startsWith("segment-")).count();
    }
  }
}
