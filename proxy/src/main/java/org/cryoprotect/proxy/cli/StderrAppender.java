package org.cryoprotect.proxy.cli;

import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.UnsynchronizedAppenderBase;
import ch.qos.logback.core.encoder.Encoder;
import java.io.ByteArrayOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * Log lines to stderr without making an event loop wait for the terminal or wake a thread for every
 * line. Callers queue the event (lock-free); one writer thread takes everything queued every {@link
 * #INTERVAL_MS} ms, or at once when {@link #WAKE_AT} events wait, and writes the batch with one
 * system call. Logback's AsyncAppender wakes its worker for every line: with one line per client
 * connection opened and one per connection closed, that was two thread switches per connection.
 * Nothing is dropped: past {@link #MAX_QUEUED} waiting events a caller waits for the writer, and
 * {@link #stop} writes out what is left.
 */
public final class StderrAppender extends UnsynchronizedAppenderBase<ILoggingEvent> {
  static final long INTERVAL_MS = 20;
  static final int WAKE_AT = 512;
  static final int MAX_QUEUED = 65_536;

  private final ConcurrentLinkedQueue<ILoggingEvent> queue = new ConcurrentLinkedQueue<>();
  private final AtomicInteger queued = new AtomicInteger();
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
    writer = new Thread(this::writeLoop, "cryoproxy-log-writer");
    writer.setDaemon(true);
    writer.start();
    super.start();
  }

  @Override
  protected void append(ILoggingEvent event) {
    event.prepareForDeferredProcessing(); // message, thread name and MDC as of now
    queue.add(event);
    int waiting = queued.incrementAndGet();
    if (waiting == WAKE_AT) {
      LockSupport.unpark(writer);
    }
    while (waiting > MAX_QUEUED && running) {
      LockSupport.unpark(writer);
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(1));
      waiting = queued.get();
    }
  }

  private void writeLoop() {
    while (running) {
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(INTERVAL_MS));
      writeQueued();
    }
  }

  /** Everything queued so far, in one write. */
  private synchronized void writeQueued() {
    ByteArrayOutputStream batch = null;
    ILoggingEvent event;
    while ((event = queue.poll()) != null) {
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
