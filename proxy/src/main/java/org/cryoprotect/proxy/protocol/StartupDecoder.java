package org.cryoprotect.proxy.protocol;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.ByteToMessageDecoder;
import java.util.List;
import org.cryoprotect.proxy.protocol.frontend.CancelRequest;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;
import org.cryoprotect.proxy.protocol.frontend.StartupPacket;
import org.cryoprotect.proxy.protocol.frontend.StartupPacket.GSSENCRequest;
import org.cryoprotect.proxy.protocol.frontend.StartupPacket.SSLRequest;

/**
 * Decodes the startup phase's untyped packets (int32 length, int32 code) into {@link
 * StartupPacket}s. Anything else is garbage before startup: {@link ProtocolException}.
 *
 * <p>The 10,000-byte limit is PostgreSQL's own MAX_STARTUP_PACKET_LENGTH, so a client that the
 * server would accept is never refused here.
 */
public final class StartupDecoder extends ByteToMessageDecoder {
  static final int MAX_STARTUP_PACKET_LENGTH = 10_000;

  private boolean broken;

  @Override
  protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
    if (broken) {
      in.skipBytes(in.readableBytes());
      return;
    }
    if (in.readableBytes() < 8) {
      return;
    }
    int length = in.getInt(in.readerIndex());
    if (length < 8 || length > MAX_STARTUP_PACKET_LENGTH) {
      broken = true;
      in.skipBytes(in.readableBytes());
      throw new ProtocolException("invalid length of startup packet: " + length);
    }
    if (in.readableBytes() < length) {
      return;
    }
    ByteBuf packet = in.readSlice(length);
    packet.skipBytes(4);
    int code = packet.readInt();
    try {
      StartupPacket decoded = decodePacket(code, packet);
      if ((decoded instanceof SSLRequest || decoded instanceof GSSENCRequest) && in.isReadable()) {
        // Data sent before the encryption answer would be trusted as if encrypted: CVE-2021-23214.
        throw new ProtocolException("received unencrypted data after encryption request");
      }
      out.add(decoded);
    } catch (ProtocolException e) {
      broken = true;
      in.skipBytes(in.readableBytes());
      throw e;
    }
  }

  private static StartupPacket decodePacket(int code, ByteBuf body) {
    switch (code) {
      case StartupPacket.SSL_REQUEST_CODE:
        return new SSLRequest();
      case StartupPacket.GSSENC_REQUEST_CODE:
        return new GSSENCRequest();
      case StartupPacket.CANCEL_REQUEST_CODE:
        if (body.readableBytes() < 8) {
          throw new ProtocolException("truncated CancelRequest");
        }
        return new CancelRequest(body.readInt(), body.readInt());
      default:
        return StartupMessage.decode(code, body);
    }
  }
}
