package org.cryoprotect.proxy.protocol;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import java.util.LinkedHashMap;
import java.util.Map;
import org.cryoprotect.proxy.protocol.frontend.CancelRequest;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;
import org.cryoprotect.proxy.protocol.frontend.StartupPacket.GSSENCRequest;
import org.cryoprotect.proxy.protocol.frontend.StartupPacket.SSLRequest;
import org.junit.jupiter.api.Test;

class StartupDecoderTest {
  private static Map<String, String> params() {
    Map<String, String> params = new LinkedHashMap<>();
    params.put("user", "alice");
    params.put("database", "app");
    params.put("application_name", "test");
    return params;
  }

  @Test
  void startupMessageRoundTripsByteExact() {
    StartupMessage message = new StartupMessage(StartupMessage.V3_0, params());
    ByteBuf encoded = message.encode(Unpooled.buffer().alloc());
    // length, 0x00030000, then name\0value\0 pairs and a final \0
    String hex = ByteBufUtil.hexDump(encoded);
    assertThat(hex).startsWith(String.format("%08x", encoded.readableBytes()) + "00030000");
    assertThat(hex).endsWith("0000");
    EmbeddedChannel channel = new EmbeddedChannel(new StartupDecoder());
    // one byte at a time: the decoder must wait for whole packets
    while (encoded.isReadable()) {
      channel.writeInbound(encoded.readRetainedSlice(1));
    }
    encoded.release();
    StartupMessage decoded = channel.readInbound();
    assertThat(decoded.parameters()).containsExactlyEntriesOf(params());
    assertThat(decoded.user()).isEqualTo("alice");
    assertThat(decoded.database()).isEqualTo("app");
    assertThat(channel.finish()).isFalse();
  }

  @Test
  void databaseDefaultsToUser() {
    Map<String, String> params = new LinkedHashMap<>();
    params.put("user", "bob");
    assertThat(new StartupMessage(StartupMessage.V3_0, params).database()).isEqualTo("bob");
  }

  @Test
  void decodesEncryptionAndCancelRequests() {
    EmbeddedChannel channel = new EmbeddedChannel(new StartupDecoder());
    channel.writeInbound(SSLRequest.encode(Unpooled.buffer().alloc()));
    assertThat((Object) channel.readInbound()).isInstanceOf(SSLRequest.class);
    channel.writeInbound(Unpooled.buffer().writeInt(8).writeInt(80877104));
    assertThat((Object) channel.readInbound()).isInstanceOf(GSSENCRequest.class);
    channel.writeInbound(new CancelRequest(42, -7).encode(Unpooled.buffer().alloc()));
    assertThat((Object) channel.readInbound()).isEqualTo(new CancelRequest(42, -7));
    channel.finishAndReleaseAll();
  }

  @Test
  void rejectsGarbageBeforeStartup() {
    EmbeddedChannel channel = new EmbeddedChannel(new StartupDecoder());
    ByteBuf http =
        Unpooled.copiedBuffer("GET / HTTP/1.1\r\n\r\n", java.nio.charset.StandardCharsets.US_ASCII);
    assertThatThrownBy(() -> channel.writeInbound(http))
        .hasCauseInstanceOf(ProtocolException.class)
        .hasMessageContaining("invalid length of startup packet");
    channel.finishAndReleaseAll();
  }

  @Test
  void rejectsDataPipelinedAfterSslRequest() {
    EmbeddedChannel channel = new EmbeddedChannel(new StartupDecoder());
    ByteBuf stuffed =
        Unpooled.wrappedBuffer(
            SSLRequest.encode(Unpooled.buffer().alloc()),
            new StartupMessage(StartupMessage.V3_0, params()).encode(Unpooled.buffer().alloc()));
    assertThatThrownBy(() -> channel.writeInbound(stuffed))
        .hasCauseInstanceOf(ProtocolException.class)
        .hasMessageContaining("unencrypted data after encryption request");
    channel.finishAndReleaseAll();
  }

  @Test
  void rejectsParameterWithoutValueAndMissingTerminator() {
    EmbeddedChannel channel = new EmbeddedChannel(new StartupDecoder());
    ByteBuf noValue = Unpooled.buffer().writeInt(0).writeInt(StartupMessage.V3_0);
    Frames.writeCString(noValue, "user");
    noValue.setInt(0, noValue.readableBytes());
    assertThatThrownBy(() -> channel.writeInbound(noValue))
        .hasCauseInstanceOf(ProtocolException.class);
    channel.finishAndReleaseAll();
  }

  @Test
  void rejectsOversizedStartupPacket() {
    EmbeddedChannel channel = new EmbeddedChannel(new StartupDecoder());
    ByteBuf big = Unpooled.buffer().writeInt(10_001).writeInt(StartupMessage.V3_0);
    assertThatThrownBy(() -> channel.writeInbound(big)).hasCauseInstanceOf(ProtocolException.class);
    channel.finishAndReleaseAll();
  }
}
