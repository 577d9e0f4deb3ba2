package org.cryoprotect.proxy.cli;

import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.encoder.PatternLayoutEncoder;
import ch.qos.logback.classic.spi.LoggingEvent;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

class StderrAppenderTest {
  @Test
  void everyLineArrivesInOrderPerThreadWithTheCallersThreadName() throws Exception {
    LoggerContext context = (LoggerContext) LoggerFactory.getILoggerFactory();
    PatternLayoutEncoder encoder = new PatternLayoutEncoder();
    encoder.setContext(context);
    encoder.setPattern("[%thread] %msg%n");
    encoder.start();
    StderrAppender appender = new StderrAppender();
    appender.setContext(context);
    appender.setEncoder(encoder);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    appender.setStream(out);
    appender.start();

    int threads = 4;
    int lines = 10_000; // 40,000 in all: under MAX_QUEUED, so nothing may be lost
    List<Thread> all = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      int id = t;
      Thread thread =
          new Thread(
              () -> {
                for (int i = 0; i < lines; i++) {
                  appender.doAppend(
                      new LoggingEvent(
                          "test",
                          context.getLogger("t"),
                          Level.INFO,
                          "line {}",
                          null,
                          new Object[] {i}));
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
    LoggerContext context = (LoggerContext) LoggerFactory.getILoggerFactory();
    PatternLayoutEncoder encoder = new PatternLayoutEncoder();
    encoder.setContext(context);
    encoder.setPattern("%msg%n");
    encoder.start();
    java.util.concurrent.CountDownLatch unblock = new java.util.concurrent.CountDownLatch(1);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    java.io.OutputStream blocked =
        new java.io.OutputStream() {
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
    StderrAppender appender = new StderrAppender();
    appender.setContext(context);
    appender.setEncoder(encoder);
    appender.setStream(blocked);
    appender.start();
    long droppedBefore = StderrAppender.dropped();
    int lines = StderrAppender.MAX_QUEUED * 2;
    long start = System.nanoTime();
    for (int i = 0; i < lines; i++) {
      appender.doAppend(
          new LoggingEvent(
              "test", context.getLogger("t"), Level.INFO, "line {}", null, new Object[] {i}));
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
