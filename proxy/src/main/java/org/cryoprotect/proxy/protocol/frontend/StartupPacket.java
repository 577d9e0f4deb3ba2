package org.cryoprotect.proxy.protocol.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;

/**
 * The untyped packets of the startup phase (int32 length, int32 code): the only messages a client
 * may send before authentication starts.
 */
public sealed interface StartupPacket
    permits StartupMessage, CancelRequest, StartupPacket.SSLRequest, StartupPacket.GSSENCRequest {
  int SSL_REQUEST_CODE = 80877103;
  int GSSENC_REQUEST_CODE = 80877104;
  int CANCEL_REQUEST_CODE = 80877102;

  record SSLRequest() implements StartupPacket {
    public static ByteBuf encode(ByteBufAllocator alloc) {
      return alloc.buffer(8).writeInt(8).writeInt(SSL_REQUEST_CODE);
    }
  }

  record GSSENCRequest() implements StartupPacket {}
}
