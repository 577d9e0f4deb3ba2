package org.cryoprotect.proxy.audit;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.stream.Stream;
import java.util.zip.CRC32C;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The audit journal: an append-only log of {@link AuditRecord}s on local disk, so that a record
 * outlives a database outage and a {@code kill -9} of the proxy (DESIGN §6).
 *
 * <p>One thread appends. It takes every record waiting, writes them, calls {@code fsync} once for
 * the group, and only then tells each record's caller it is durable: the caller holds back the
 * statement's completion until then. Records are framed as length, CRC-32C and JSON; a torn record
 * at the end (a crash in the middle of a write) fails its check and is cut off at the next start.
 * Files are segments of {@link #SEGMENT_BYTES} named by number.
 *
 * <p>The writer ({@link AuditWriter}) reads from its checkpoint up to what is durable, and after
 * the database has taken a batch moves the checkpoint (written to a file, then renamed into place)
 * and deletes segments wholly behind it. {@code id} names this journal in the table: together with
 * {@code seq} it identifies a record, so a batch written again after a crash is not duplicated.
 */
public final class AuditJournal implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(AuditJournal.class);
  static final long SEGMENT_BYTES = 64L << 20;
  private static final int HEADER = 8; // length, CRC-32C
  private static final int MAX_RECORD = 16 << 20;
  private static final int GROUP = 4096;

  /** A place in the journal: a segment and a byte offset in it. */
  public record Position(long segment, long offset) {
    boolean before(Position other) {
      return segment < other.segment || (segment == other.segment && offset < other.offset);
    }
  }

  /** A record read back, with where the next one starts and how many bytes it took. */
  public record Entry(AuditRecord record, Position next, int bytes) {}

  private record Append(AuditRecord record, Consumer<Throwable> done) {}

  private final Path dir;
  private final String id;
  private final long maxBytes;
  private final LinkedBlockingQueue<Append> queue = new LinkedBlockingQueue<>();
  private final Thread appender;
  private final Object appended = new Object(); // the writer waits on it for new records
  private final AtomicLong pendingBytes = new AtomicLong(); // journaled, not yet in the database
  private final AtomicLong pendingRecords = new AtomicLong();
  private final AtomicLong journaled = new AtomicLong();
  private volatile Position durable;
  private volatile Position checkpoint;
  // Appender thread only:
  private FileChannel out;
  private long segment;
  private long offset;
  private long nextSeq;
  private volatile boolean closed;

  private AuditJournal(Path dir, String id, long maxBytes) {
    this.dir = dir;
    this.id = id;
    this.maxBytes = maxBytes;
    this.appender = new Thread(this::appendLoop, "cryoproxy-audit-journal");
    appender.setDaemon(true);
  }

  /**
   * Opens (creating if need be) the journal in {@code dir}: cuts off a torn last record, counts
   * what is still to be written, and starts the appending thread.
   */
  public static AuditJournal open(Path dir, long maxBytes) throws IOException {
    Files.createDirectories(dir);
    Path idFile = dir.resolve("journal.id");
    if (!Files.exists(idFile)) {
      String fresh = UUID.randomUUID().toString().substring(0, 13);
      writeDurably(dir, idFile, fresh);
    }
    AuditJournal j =
        new AuditJournal(dir, Files.readString(idFile, StandardCharsets.US_ASCII).trim(), maxBytes);
    j.recover();
    j.appender.start();
    return j;
  }

  public String id() {
    return id;
  }

  /** Whether a new record would take the journal past {@code max_journal_bytes}. */
  public boolean full() {
    return pendingBytes.get() >= maxBytes;
  }

  /**
   * Journals {@code record} (its {@code seq} is given here). {@code done} runs on the journal's
   * thread: with null once the record is on disk, else with why it is not.
   */
  public void append(AuditRecord record, Consumer<Throwable> done) {
    if (closed) {
      done.accept(new IOException("audit journal closed"));
      return;
    }
    queue.add(new Append(record, done));
  }

  long pendingRecords() {
    return pendingRecords.get();
  }

  long pendingBytes() {
    return pendingBytes.get();
  }

  long journaled() {
    return journaled.get();
  }

  Position checkpoint() {
    return checkpoint;
  }

  // ---------------------------------------------------------------- appending

  private void appendLoop() {
    List<Append> group = new ArrayList<>();
    while (!closed || !queue.isEmpty()) {
      try {
        Append first = queue.poll(100, TimeUnit.MILLISECONDS);
        if (first == null) {
          continue;
        }
        group.add(first);
        queue.drainTo(group, GROUP - 1);
        writeGroup(group);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        closed = true;
      } finally {
        group.clear();
      }
    }
  }

  private void writeGroup(List<Append> group) {
    long startOffset = offset;
    long startSegment = segment;
    long startSeq = nextSeq;
    long bytes = 0;
    try {
      for (Append a : group) {
        byte[] json = a.record().withSeq(nextSeq).toJson();
        ByteBuffer frame = frame(json);
        if (offset > 0 && offset + frame.remaining() > SEGMENT_BYTES) {
          roll();
        }
        int n = frame.remaining();
        while (frame.hasRemaining()) {
          out.write(frame);
        }
        offset += n;
        bytes += n;
        nextSeq++;
      }
      out.force(false);
    } catch (IOException e) {
      log.error("audit journal {}: write failed: {}", dir, e.getMessage());
      undo(startSegment, startOffset, startSeq);
      group.forEach(a -> a.done().accept(e));
      return;
    }
    pendingBytes.addAndGet(bytes);
    pendingRecords.addAndGet(group.size());
    journaled.addAndGet(group.size());
    durable = new Position(segment, offset);
    group.forEach(a -> a.done().accept(null));
    synchronized (appended) {
      appended.notifyAll();
    }
  }

  /** A failed group leaves nothing behind: back to where it began. */
  private void undo(long startSegment, long startOffset, long startSeq) {
    nextSeq = startSeq;
    try {
      if (segment != startSegment) {
        out.close();
        Files.deleteIfExists(segmentFile(segment));
        segment = startSegment;
        out = FileChannel.open(segmentFile(segment), StandardOpenOption.WRITE);
      }
      out.truncate(startOffset);
      out.position(startOffset);
      offset = startOffset;
    } catch (IOException e) {
      log.error("audit journal {}: cannot roll back a failed write: {}", dir, e.getMessage());
    }
  }

  private static ByteBuffer frame(byte[] json) {
    CRC32C crc = new CRC32C();
    crc.update(json);
    ByteBuffer b = ByteBuffer.allocate(HEADER + json.length);
    b.putInt(json.length).putInt((int) crc.getValue()).put(json).flip();
    return b;
  }

  private void roll() throws IOException {
    out.force(false);
    out.close();
    segment++;
    offset = 0;
    out =
        FileChannel.open(
            segmentFile(segment), StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
    forceDirectory(dir);
  }

  private Path segmentFile(long n) {
    return dir.resolve(String.format("segment-%016d.log", n));
  }

  // ---------------------------------------------------------------- reading (writer)

  /** Up to {@code max} durable records from {@code from} on, oldest first. */
  List<Entry> read(Position from, int max) throws IOException {
    Position end = durable;
    List<Entry> entries = new ArrayList<>();
    Position pos = from;
    while (entries.size() < max && pos.before(end)) {
      Path file = segmentFile(pos.segment());
      if (!Files.exists(file)) {
        pos = new Position(pos.segment() + 1, 0);
        continue;
      }
      try (FileChannel in = FileChannel.open(file, StandardOpenOption.READ)) {
        long limit = pos.segment() == end.segment() ? end.offset() : in.size();
        long at = pos.offset();
        while (entries.size() < max && at < limit) {
          Entry e = readAt(in, pos.segment(), at);
          if (e == null) {
            throw new IOException("audit journal " + file + ": bad record at " + at);
          }
          entries.add(e);
          at = e.next().offset();
        }
        pos =
            at >= limit && pos.segment() < end.segment()
                ? new Position(pos.segment() + 1, 0)
                : new Position(pos.segment(), at);
      }
    }
    return entries;
  }

  /** The record at {@code at}, or null when what is there is not a whole, intact record. */
  private static Entry readAt(FileChannel in, long segment, long at) throws IOException {
    ByteBuffer header = ByteBuffer.allocate(HEADER);
    if (readFully(in, header, at) < HEADER) {
      return null;
    }
    header.flip();
    int length = header.getInt();
    int crc = header.getInt();
    if (length <= 0 || length > MAX_RECORD) {
      return null;
    }
    ByteBuffer body = ByteBuffer.allocate(length);
    if (readFully(in, body, at + HEADER) < length) {
      return null;
    }
    CRC32C check = new CRC32C();
    check.update(body.array());
    if ((int) check.getValue() != crc) {
      return null;
    }
    AuditRecord record = AuditRecord.fromJson(body.array());
    return new Entry(record, new Position(segment, at + HEADER + length), HEADER + length);
  }

  private static int readFully(FileChannel in, ByteBuffer into, long at) throws IOException {
    int total = 0;
    while (into.hasRemaining()) {
      int n = in.read(into, at + total);
      if (n < 0) {
        break;
      }
      total += n;
    }
    return total;
  }

  /** Waits up to {@code millis} for records appended after now. */
  void awaitAppend(long millis) throws InterruptedException {
    synchronized (appended) {
      appended.wait(millis);
    }
  }

  /**
   * The database has every record before {@code next} ({@code records} of them, {@code bytes} long,
   * since the last checkpoint): remember it durably and free the segments behind it.
   */
  void checkpoint(Position next, int records, long bytes) throws IOException {
    writeDurably(dir, dir.resolve("checkpoint"), next.segment() + " " + next.offset());
    checkpoint = next;
    pendingBytes.addAndGet(-bytes);
    pendingRecords.addAndGet(-records);
    try (Stream<Path> files = Files.list(dir)) {
      for (Path f : files.toList()) {
        long n = segmentNumber(f);
        if (n >= 0 && n < next.segment()) {
          Files.deleteIfExists(f);
        }
      }
    }
  }

  // ---------------------------------------------------------------- start-up

  private void recover() throws IOException {
    Path cp = dir.resolve("checkpoint");
    List<Long> segments = new ArrayList<>();
    try (Stream<Path> files = Files.list(dir)) {
      files.map(AuditJournal::segmentNumber).filter(n -> n >= 0).sorted().forEach(segments::add);
    }
    if (Files.exists(cp)) {
      String[] parts = Files.readString(cp, StandardCharsets.US_ASCII).trim().split(" ");
      checkpoint = new Position(Long.parseLong(parts[0]), Long.parseLong(parts[1]));
    } else {
      checkpoint = new Position(segments.isEmpty() ? 1 : segments.get(0), 0);
    }
    if (segments.isEmpty()) {
      segment = Math.max(1, checkpoint.segment());
      offset = 0;
      out =
          FileChannel.open(
              segmentFile(segment), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
      forceDirectory(dir);
      durable = new Position(segment, 0);
      nextSeq = 1;
      log.info("audit journal {} ({}): new", dir, id);
      return;
    }
    long lastSeq = 0;
    long bytes = 0;
    long records = 0;
    for (long n : segments) {
      try (FileChannel in =
          FileChannel.open(segmentFile(n), StandardOpenOption.READ, StandardOpenOption.WRITE)) {
        long at = 0;
        Entry e;
        while ((e = readAt(in, n, at)) != null) {
          lastSeq = e.record().seq();
          if (!new Position(n, at).before(checkpoint)) {
            bytes += e.bytes();
            records++;
          }
          at = e.next().offset();
        }
        if (at < in.size()) {
          log.warn(
              "audit journal {}: cut off {} bytes of a torn record",
              segmentFile(n),
              in.size() - at);
          in.truncate(at);
          in.force(true);
        }
        segment = n;
        offset = at;
      }
    }
    out = FileChannel.open(segmentFile(segment), StandardOpenOption.WRITE);
    out.position(offset);
    durable = new Position(segment, offset);
    nextSeq = lastSeq + 1;
    pendingBytes.set(bytes);
    pendingRecords.set(records);
    log.info(
        "audit journal {} ({}): {} records ({} bytes) still to be written, next seq {}",
        dir,
        id,
        records,
        bytes,
        nextSeq);
  }

  private static long segmentNumber(Path f) {
    String name = f.getFileName().toString();
    if (!name.startsWith("segment-") || !name.endsWith(".log")) {
      return -1;
    }
    try {
      return Long.parseLong(name.substring(8, name.length() - 4));
    } catch (NumberFormatException e) {
      return -1;
    }
  }

  /** Writes {@code text} to {@code file} so that a crash leaves either the old or the new. */
  private static void writeDurably(Path dir, Path file, String text) throws IOException {
    Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
    try (FileChannel c =
        FileChannel.open(
            tmp,
            StandardOpenOption.CREATE,
            StandardOpenOption.WRITE,
            StandardOpenOption.TRUNCATE_EXISTING)) {
      ByteBuffer b = ByteBuffer.wrap(text.getBytes(StandardCharsets.US_ASCII));
      while (b.hasRemaining()) {
        c.write(b);
      }
      c.force(true);
    }
    try {
      Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } catch (AtomicMoveNotSupportedException e) {
      Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
    }
    forceDirectory(dir);
  }

  private static void forceDirectory(Path dir) {
    try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
      d.force(true);
    } catch (IOException e) {
      // Not every file system lets a directory be opened; the files themselves are forced.
    }
  }

  /** Stops taking records; those already queued are written first. */
  @Override
  public void close() {
    closed = true;
    try {
      appender.join(5_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    try {
      if (out != null) {
        out.close();
      }
    } catch (IOException e) {
      log.warn("audit journal {}: close: {}", dir, e.getMessage());
    }
  }
}
