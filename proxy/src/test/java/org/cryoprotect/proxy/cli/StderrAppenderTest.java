package org.cryoprotect.proxy.cli;

import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.encoder.PatternLayoutEncoder;
import ch.qos.logback.classic.spi.LoggingEvent;
import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

class StderrAppenderTest {
  static final LoggerContext CONTEXT = (LoggerContext) LoggerFactory.getILoggerFactory();

  /** A started appender writing {@code pattern} lines to {@code out} instead of stderr. */
  static StderrAppender appender(String pattern, OutputStream out) {
    PatternLayoutEncoder encoder = new PatternLayoutEncoder();
    encoder.setContext(CONTEXT);
    encoder.setPattern(pattern);
    encoder.start();
    StderrAppender appender = new StderrAppender();
    appender.setContext(CONTEXT);
    appender.setEncoder(encoder);
    appender.setStream(out);
    appender.start();
    return appender;
  }

  static LoggingEvent line(int i) {
    return new LoggingEvent(
        "test", CONTEXT.getLogger("t"), Level.INFO, "line {}", null, new Object[] {i});
  }

  @Test
  void everyLineArrivesInOrderPerThreadWithTheCallersThreadName() throws Exception {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    StderrAppender appender = appender("[%thread] %msg%n", out);

    int threads = 4;
    int lines = 10_000; // 40,000 in all: under MAX_QUEUED, so nothing may be lost
    List<Thread> all = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      int id = t;
      Thread thread =
          new Thread(
              () -> {
                for (int i = 0; i < lines; i++) {
                  appender.doAppend(line(i));
                }
              },
              "writer-" + id);
      all.add(thread);
      thread.start();
    }
    for (Thread thread : all) {
      thread.join();
    }
    appender.stop();

    String[] written = out.toString(StandardCharsets.UTF_8).split("\n");
    assertThat(written).hasSize(threads * lines);
    int[] next = new int[threads];
    for (String line : written) {
      int id = line.charAt("[writer-".length()) - '0';
      assertThat(line).isEqualTo("[writer-" + id + "] line " + next[id]);
      next[id]++;
    }
  }

  /**
   * stderr stops taking lines (a blocked pipe): callers go on without waiting, what does not fit is
   * dropped and counted, and once stderr moves again the log says how many lines were lost.
   */
  @Test
  void aBlockedStderrDropsAndCountsInsteadOfStoppingTheCaller() throws Exception {
    java.util.concurrent.CountDownLatch unblock = new java.util.concurrent.CountDownLatch(1);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    OutputStream blocked =
        new OutputStream() {
          @Override
          public void write(int b) {
            write(new byte[] {(byte) b}, 0, 1);
          }

          @Override
          public void write(byte[] b, int off, int len) {
            try {
              unblock.await();
            } catch (InterruptedException e) {
              Thread.currentThread().interrupt();
            }
            out.write(b, off, len);
          }
        };
    StderrAppender appender = appender("%msg%n", blocked);
    long droppedBefore = StderrAppender.dropped();
    int lines = StderrAppender.MAX_QUEUED * 2;
    long start = System.nanoTime();
    for (int i = 0; i < lines; i++) {
      appender.doAppend(line(i));
    }
    long ms = (System.nanoTime() - start) / 1_000_000;
    long dropped = StderrAppender.dropped() - droppedBefore;
    unblock.countDown();
    appender.stop();
    String written = out.toString(StandardCharsets.UTF_8);
    System.out.printf(
        "[StderrAppenderTest] %d lines into a blocked stderr in %d ms, %d dropped%n",
        lines, ms, dropped);
    // at most MAX_QUEUED wait, plus the batch the writer had taken when stderr blocked
    assertThat(dropped)
        .isGreaterThanOrEqualTo(lines - StderrAppender.MAX_QUEUED - StderrAppender.MAX_BATCH);
    assertThat(written).contains("log lines dropped");
    assertThat(written.split("\n").length)
        .isEqualTo((int) (lines - dropped) + (written.contains("log lines dropped") ? 1 : 0));
  }
}
