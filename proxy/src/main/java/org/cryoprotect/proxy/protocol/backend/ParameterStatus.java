package org.cryoprotect.proxy.protocol.backend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import org.cryoprotect.proxy.protocol.Frames;

public record ParameterStatus(String name, String value) {
  public static final char TYPE = 'S';

  public static ParameterStatus decode(ByteBuf body) {
    return new ParameterStatus(Frames.readCString(body), Frames.readCString(body));
  }

  public ByteBuf encode(ByteBufAllocator alloc) {
    return writeTo(alloc.buffer(7 + name.length() + value.length()));
  }

  /** Appends the message to {@code buf}. */
  public ByteBuf writeTo(ByteBuf buf) {
    int at = Frames.begin(buf, TYPE);
    Frames.writeCString(buf, name);
    Frames.writeCString(buf, value);
    return Frames.finish(buf, at);
  }
}
