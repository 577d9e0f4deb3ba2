package org.cryoprotect.proxy.testing;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import org.junit.jupiter.api.Test;

/** The leak watcher must really fail a test class that leaked, or the fuzz test proves nothing. */
class LeakWatcherTest {

  @Test
  void aLeakedBufferFailsTheClass() {
    leakOneBuffer();
    assertThatThrownBy(() -> new LeakWatcher().afterAll(null))
        .isInstanceOf(AssertionError.class)
        .hasMessageContaining("ByteBuf leak report");
  }

  private static void leakOneBuffer() {
    ByteBuf leaked = PooledByteBufAllocator.DEFAULT.buffer(128);
    leaked.writeInt(42); // never released
  }
}
