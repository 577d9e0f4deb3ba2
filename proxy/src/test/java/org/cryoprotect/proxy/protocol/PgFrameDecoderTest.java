package org.cryoprotect.proxy.protocol;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.handler.codec.DecoderException;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class PgFrameDecoderTest {
  private static ByteBuf query(String sql) {
    ByteBuf buf = Unpooled.buffer();
    int at = Frames.begin(buf, 'Q');
    Frames.writeCString(buf, sql);
    return Frames.finish(buf, at);
  }

  @Test
  void decodesMessagesFedOneByteAtATime() {
    EmbeddedChannel channel = new EmbeddedChannel(new PgFrameDecoder(1024));
    ByteBuf input = Unpooled.wrappedBuffer(query("SELECT 1"), query("SELECT 2"));
    byte[] expectedFirst = new byte[14];
    input.getBytes(0, expectedFirst);
    while (input.isReadable()) {
      channel.writeInbound(input.readRetainedSlice(1));
    }
    input.release();
    ByteBuf first = channel.readInbound();
    ByteBuf second = channel.readInbound();
    assertThat(ByteBufUtilBytes.of(first)).isEqualTo(expectedFirst);
    assertThat(Frames.type(second)).isEqualTo((byte) 'Q');
    assertThat(Frames.body(second).toString(StandardCharsets.UTF_8)).isEqualTo("SELECT 2\0");
    assertThat((Object) channel.readInbound()).isNull();
    first.release();
    second.release();
    assertThat(channel.finish()).isFalse();
  }

  @Test
  void rejectsLengthBelowFour() {
    EmbeddedChannel channel = new EmbeddedChannel(new PgFrameDecoder(1024));
    ByteBuf bad = Unpooled.buffer().writeByte('Q').writeInt(3);
    assertThatThrownBy(() -> channel.writeInbound(bad))
        .isInstanceOf(DecoderException.class)
        .hasCauseInstanceOf(ProtocolException.class)
        .hasMessageContaining("invalid message length 3");
    channel.finishAndReleaseAll();
  }

  @Test
  void rejectsOversizedMessageBeforeBuffering() {
    EmbeddedChannel channel = new EmbeddedChannel(new PgFrameDecoder(1024));
    // Only the header arrives: the limit must be enforced without waiting for the body.
    ByteBuf header = Unpooled.buffer().writeByte('Q').writeInt(1024 + 4 + 1);
    assertThatThrownBy(() -> channel.writeInbound(header))
        .hasCauseInstanceOf(ProtocolException.class)
        .hasMessageContaining("exceeds the maximum of 1024");
    // After a violation nothing more is decoded, even well-formed bytes.
    channel.writeInbound(query("SELECT 1"));
    assertThat((Object) channel.readInbound()).isNull();
    channel.finishAndReleaseAll();
  }

  @Test
  void acceptsMessageExactlyAtTheLimit() {
    EmbeddedChannel channel = new EmbeddedChannel(new PgFrameDecoder(9));
    channel.writeInbound(query("SELECT 1")); // body "SELECT 1\0" is 9 bytes
    ByteBuf frame = channel.readInbound();
    assertThat(frame.readableBytes()).isEqualTo(14);
    frame.release();
    channel.finishAndReleaseAll();
  }

  /** Copies readable bytes without moving the reader index. */
  static final class ByteBufUtilBytes {
    static byte[] of(ByteBuf buf) {
      byte[] bytes = new byte[buf.readableBytes()];
      buf.getBytes(buf.readerIndex(), bytes);
      return bytes;
    }
  }
}
