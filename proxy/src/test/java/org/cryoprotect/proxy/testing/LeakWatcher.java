package org.cryoprotect.proxy.testing;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.AppenderBase;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Turns Netty's leak reports into test failures (STYLE rule 9). Registered as a logback appender
 * for {@code io.netty.util.ResourceLeakDetector} and, through service loading, as a JUnit extension
 * that fails every test class after which a leak was reported.
 */
public final class LeakWatcher extends AppenderBase<ILoggingEvent> implements AfterAllCallback {
  private static final List<String> LEAKS = new ArrayList<>();

  @Override
  protected void append(ILoggingEvent event) {
    if (event.getLevel().isGreaterOrEqual(Level.ERROR)
        && event.getFormattedMessage().contains("LEAK")) {
      synchronized (LEAKS) {
        LEAKS.add(event.getFormattedMessage());
      }
    }
  }

  @Override
  public void afterAll(ExtensionContext context) throws Exception {
    // Leaks are reported when a buffer is allocated after the leaked one was collected.
    for (int i = 0; i < 3; i++) {
      System.gc();
      Thread.sleep(50);
      for (int j = 0; j < 64; j++) {
        ByteBuf probe = PooledByteBufAllocator.DEFAULT.buffer(64);
        probe.release();
      }
    }
    synchronized (LEAKS) {
      if (!LEAKS.isEmpty()) {
        String first = LEAKS.get(0);
        int count = LEAKS.size();
        LEAKS.clear();
        throw new AssertionError(count + " ByteBuf leak report(s); first:\n" + first);
      }
    }
  }
}
