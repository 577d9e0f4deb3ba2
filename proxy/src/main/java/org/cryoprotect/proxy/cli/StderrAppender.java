package org.cryoprotect.proxy.cli;

import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.UnsynchronizedAppenderBase;
import ch.qos.logback.core.encoder.Encoder;
import java.io.ByteArrayOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * Log lines to stderr without making an event loop wait for the terminal or wake a thread for every
 * line. Callers queue the event (lock-free); one writer thread takes everything queued every {@link
 * #INTERVAL_MS} ms, or at once when {@link #WAKE_AT} events wait, and writes the batch with one
 * system call. Logback's AsyncAppender wakes its worker for every line: with one line per client
 * connection opened and one per connection closed, that was two thread switches per connection. A
 * caller never waits: past {@link #MAX_QUEUED} waiting events (stderr blocked, or a flood) an event
 * is dropped and counted ({@link #dropped}, the metric {@code cryoproxy_log_lines_dropped_total}),
 * and the next batch says how many were lost. {@link #stop} writes out what is left.
 */
public final class StderrAppender extends UnsynchronizedAppenderBase<ILoggingEvent> {
  static final long INTERVAL_MS = 20;
  static final int WAKE_AT = 512;
  static final int MAX_QUEUED = 65_536;
  static final int MAX_BATCH = 8_192; // events in one write

  private final ConcurrentLinkedQueue<ILoggingEvent> queue = new ConcurrentLinkedQueue<>();
  private final AtomicInteger queued = new AtomicInteger();
  private static final AtomicLong DROPPED = new AtomicLong(); // every appender of the process
  private long droppedReported; // by the writer, under the lock of writeQueued
  private Encoder<ILoggingEvent> encoder;
  private OutputStream out = new FileOutputStream(FileDescriptor.err);
  private volatile boolean running;
  private Thread writer;

  public void setEncoder(Encoder<ILoggingEvent> encoder) {
    this.encoder = encoder;
  }

  /** Where the lines go instead of stderr (tests). */
  void setStream(OutputStream out) {
    this.out = out;
  }

  @Override
  public void start() {
    if (encoder == null) {
      addError("no encoder for appender " + name);
      return;
    }
    running = true;
    droppedReported = DROPPED.get();
    writer = new Thread(this::writeLoop, "cryoproxy-log-writer");
    writer.setDaemon(true);
    writer.start();
    super.start();
  }

  @Override
  protected void append(ILoggingEvent event) {
    int waiting = queued.incrementAndGet();
    if (waiting > MAX_QUEUED) {
      queued.decrementAndGet();
      DROPPED.incrementAndGet(); // an event loop never waits for the log
      return;
    }
    event.prepareForDeferredProcessing(); // message, thread name and MDC as of now
    queue.add(event);
    if (waiting == WAKE_AT) {
      LockSupport.unpark(writer);
    }
  }

  /** Log lines dropped so far because {@link #MAX_QUEUED} were waiting to be written. */
  public static long dropped() {
    return DROPPED.get();
  }

  private void writeLoop() {
    while (running) {
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(INTERVAL_MS));
      writeQueued();
    }
  }

  /** Everything queued so far, in writes of up to {@link #MAX_BATCH} events. */
  private synchronized void writeQueued() {
    while (writeBatch()) {
      // a full batch: more may wait
    }
  }

  /** One write of what is queued, after a notice of lines dropped since the last; true if full. */
  private boolean writeBatch() {
    ByteArrayOutputStream batch = null;
    long dropped = DROPPED.get();
    if (dropped > droppedReported) {
      batch = new ByteArrayOutputStream(8192);
      batch.writeBytes(
          ("cryoproxy: "
                  + (dropped - droppedReported)
                  + " log lines dropped: more than "
                  + MAX_QUEUED
                  + " were waiting to be written\n")
              .getBytes(StandardCharsets.UTF_8));
      droppedReported = dropped;
    }
    int n = 0;
    ILoggingEvent event;
    while (n < MAX_BATCH && (event = queue.poll()) != null) {
      n++;
      queued.decrementAndGet();
      if (batch == null) {
        batch = new ByteArrayOutputStream(8192);
      }
      batch.writeBytes(encoder.encode(event));
    }
    if (batch != null) {
      try {
        batch.writeTo(out);
        out.flush();
      } catch (IOException e) {
        addError("cannot write log lines", e); // stderr is gone: nothing better to do
      }
    }
    return n == MAX_BATCH;
  }

  @Override
  public void stop() {
    if (!isStarted()) {
      return;
    }
    running = false;
    LockSupport.unpark(writer);
    try {
      writer.join(TimeUnit.SECONDS.toMillis(2));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    writeQueued();
    super.stop();
  }
}
