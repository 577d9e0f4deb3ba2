package org.cryoprotect.proxy.protocol.backend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import java.util.ArrayList;
import java.util.List;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.ProtocolException;

/** The Authentication* family ('R'), told apart by the int32 code after the length. */
public sealed interface Authentication {
  char TYPE = 'R';

  ByteBuf encode(ByteBufAllocator alloc);

  record AuthenticationOk() implements Authentication {
    @Override
    public ByteBuf encode(ByteBufAllocator alloc) {
      return writeTo(alloc.buffer(9));
    }

    /** Appends the message to {@code buf}. */
    public ByteBuf writeTo(ByteBuf buf) {
      int at = Frames.begin(buf, TYPE);
      buf.writeInt(0);
      return Frames.finish(buf, at);
    }
  }

  record AuthenticationCleartextPassword() implements Authentication {
    @Override
    public ByteBuf encode(ByteBufAllocator alloc) {
      return withCode(alloc, 3, 0);
    }
  }

  record AuthenticationMD5Password(byte[] salt) implements Authentication {
    @Override
    public ByteBuf encode(ByteBufAllocator alloc) {
      ByteBuf buf = alloc.buffer(13);
      int at = Frames.begin(buf, TYPE);
      buf.writeInt(5).writeBytes(salt);
      return Frames.finish(buf, at);
    }
  }

  record AuthenticationSASL(List<String> mechanisms) implements Authentication {
    @Override
    public ByteBuf encode(ByteBufAllocator alloc) {
      ByteBuf buf = alloc.buffer();
      int at = Frames.begin(buf, TYPE);
      buf.writeInt(10);
      mechanisms.forEach(m -> Frames.writeCString(buf, m));
      buf.writeByte(0);
      return Frames.finish(buf, at);
    }
  }

  record AuthenticationSASLContinue(byte[] data) implements Authentication {
    @Override
    public ByteBuf encode(ByteBufAllocator alloc) {
      return withData(alloc, 11, data);
    }
  }

  record AuthenticationSASLFinal(byte[] data) implements Authentication {
    @Override
    public ByteBuf encode(ByteBufAllocator alloc) {
      return withData(alloc, 12, data);
    }
  }

  /** A request this proxy cannot answer (Kerberos, GSS, SSPI): carried so the error can name it. */
  record Unsupported(int code) implements Authentication {
    @Override
    public ByteBuf encode(ByteBufAllocator alloc) {
      return withCode(alloc, code, 0);
    }
  }

  /** Decodes the body of an 'R' message. */
  public static Authentication decode(ByteBuf body) {
    if (body.readableBytes() < 4) {
      throw new ProtocolException("truncated Authentication message");
    }
    int code = body.readInt();
    return switch (code) {
      case 0 -> new AuthenticationOk();
      case 3 -> new AuthenticationCleartextPassword();
      case 5 -> {
        if (body.readableBytes() < 4) {
          throw new ProtocolException("truncated AuthenticationMD5Password");
        }
        byte[] salt = new byte[4];
        body.readBytes(salt);
        yield new AuthenticationMD5Password(salt);
      }
      case 10 -> {
        List<String> mechanisms = new ArrayList<>();
        while (body.isReadable() && body.getByte(body.readerIndex()) != 0) {
          mechanisms.add(Frames.readCString(body));
        }
        yield new AuthenticationSASL(mechanisms);
      }
      case 11 -> new AuthenticationSASLContinue(remaining(body));
      case 12 -> new AuthenticationSASLFinal(remaining(body));
      default -> new Unsupported(code);
    };
  }

  private static byte[] remaining(ByteBuf body) {
    byte[] data = new byte[body.readableBytes()];
    body.readBytes(data);
    return data;
  }

  private static ByteBuf withCode(ByteBufAllocator alloc, int code, int extra) {
    ByteBuf buf = alloc.buffer(9 + extra);
    int at = Frames.begin(buf, TYPE);
    buf.writeInt(code);
    return Frames.finish(buf, at);
  }

  private static ByteBuf withData(ByteBufAllocator alloc, int code, byte[] data) {
    ByteBuf buf = alloc.buffer(9 + data.length);
    int at = Frames.begin(buf, TYPE);
    buf.writeInt(code).writeBytes(data);
    return Frames.finish(buf, at);
  }
}
