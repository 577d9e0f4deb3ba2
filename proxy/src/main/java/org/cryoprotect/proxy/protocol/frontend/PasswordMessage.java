package org.cryoprotect.proxy.protocol.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.ProtocolException;

/**
 * The 'p' message. Its body depends on what the server asked for: a NUL-terminated password
 * (cleartext or md5), a SASLInitialResponse or a SASLResponse. The receiver knows which.
 */
public final class PasswordMessage {
  public static final char TYPE = 'p';

  private PasswordMessage() {}

  /** Cleartext or md5 password: a C string. */
  public static String password(ByteBuf body) {
    return Frames.readCString(body);
  }

  public static ByteBuf encodePassword(ByteBufAllocator alloc, String password) {
    ByteBuf buf = alloc.buffer();
    int at = Frames.begin(buf, TYPE);
    Frames.writeCString(buf, password);
    return Frames.finish(buf, at);
  }

  /** SASLInitialResponse: mechanism, int32 length (-1 = none), data. */
  public record SASLInitialResponse(String mechanism, byte[] data) {
    public static SASLInitialResponse decode(ByteBuf body) {
      String mechanism = Frames.readCString(body);
      if (body.readableBytes() < 4) {
        throw new ProtocolException("truncated SASLInitialResponse");
      }
      int length = body.readInt();
      if (length < -1 || length > body.readableBytes()) {
        throw new ProtocolException("invalid SASLInitialResponse data length " + length);
      }
      byte[] data = new byte[Math.max(length, 0)];
      body.readBytes(data);
      return new SASLInitialResponse(mechanism, data);
    }

    public ByteBuf encode(ByteBufAllocator alloc) {
      ByteBuf buf = alloc.buffer();
      int at = Frames.begin(buf, TYPE);
      Frames.writeCString(buf, mechanism);
      buf.writeInt(data.length).writeBytes(data);
      return Frames.finish(buf, at);
    }
  }

  /** SASLResponse: the rest of the body is the mechanism's data. */
  public static byte[] saslResponse(ByteBuf body) {
    byte[] data = new byte[body.readableBytes()];
    body.readBytes(data);
    return data;
  }

  public static ByteBuf encodeSaslResponse(ByteBufAllocator alloc, byte[] data) {
    ByteBuf buf = alloc.buffer(5 + data.length);
    int at = Frames.begin(buf, TYPE);
    buf.writeBytes(data);
    return Frames.finish(buf, at);
  }
}
