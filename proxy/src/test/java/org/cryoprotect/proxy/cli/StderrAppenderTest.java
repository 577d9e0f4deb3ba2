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
    int lines = 30_000; // past MAX_QUEUED in all: callers must wait, nothing may be lost
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
}
