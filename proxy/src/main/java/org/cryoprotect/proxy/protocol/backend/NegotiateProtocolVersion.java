package org.cryoprotect.proxy.protocol.backend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import java.util.List;
import org.cryoprotect.proxy.protocol.Frames;

/** Sent when a client asks for a newer minor version or for {@code _pq_.} options we lack. */
public record NegotiateProtocolVersion(int newestMinorVersion, List<String> unrecognizedOptions) {
  public static final char TYPE = 'v';

  public ByteBuf encode(ByteBufAllocator alloc) {
    ByteBuf buf = alloc.buffer();
    int at = Frames.begin(buf, TYPE);
    buf.writeInt(newestMinorVersion).writeInt(unrecognizedOptions.size());
    unrecognizedOptions.forEach(o -> Frames.writeCString(buf, o));
    return Frames.finish(buf, at);
  }
}
