package org.cryoprotect.proxy.protocol;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import java.nio.charset.StandardCharsets;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.junit.jupiter.api.Test;

class ParseTest {
  private static final ByteBufAllocator ALLOC = ByteBufAllocator.DEFAULT;

  @Test
  void unnamedQueryEndPointsAtTheTextsNul() {
    ByteBuf frame = new Parse("", "SELECT $1", new int[] {23}).encode(ALLOC);
    int end = Parse.unnamedQueryEnd(frame);
    int start = frame.readerIndex() + Frames.HEADER + 1;
    assertThat(frame.toString(start, end - start, StandardCharsets.UTF_8)).isEqualTo("SELECT $1");
    assertThat(Parse.decode(Frames.body(frame)).query()).isEqualTo("SELECT $1");
    frame.release();
  }

  @Test
  void namedOrMalformedParseIsLeftToDecode() {
    ByteBuf named = new Parse("s1", "SELECT 1", new int[0]).encode(ALLOC);
    assertThat(Parse.unnamedQueryEnd(named)).isEqualTo(-1);
    named.release();

    ByteBuf wrongCount = new Parse("", "SELECT 1", new int[] {23}).encode(ALLOC);
    wrongCount.setShort(wrongCount.writerIndex() - 6, 2); // says two types, carries one
    assertThat(Parse.unnamedQueryEnd(wrongCount)).isEqualTo(-1);
    assertThatThrownBy(() -> Parse.decode(Frames.body(wrongCount)))
        .isInstanceOf(ProtocolException.class);
    wrongCount.release();

    ByteBuf truncated = new Parse("", "SELECT 1", new int[0]).encode(ALLOC);
    truncated.writerIndex(truncated.writerIndex() - 1); // half of the type count
    assertThat(Parse.unnamedQueryEnd(truncated)).isEqualTo(-1);
    truncated.release();

    ByteBuf noText = ALLOC.buffer().writeByte('P').writeInt(5).writeByte(0);
    assertThat(Parse.unnamedQueryEnd(noText)).isEqualTo(-1);
    noText.release();
  }
}
