package org.cryoprotect.proxy.protocol.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import java.util.LinkedHashMap;
import java.util.Map;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.ProtocolException;

/** Protocol version (major in the high 16 bits) and the name/value parameters, in order. */
public record StartupMessage(int protocolVersion, Map<String, String> parameters)
    implements StartupPacket {
  public static final int V3_0 = 3 << 16;

  public int majorVersion() {
    return protocolVersion >>> 16;
  }

  public int minorVersion() {
    return protocolVersion & 0xffff;
  }

  public String user() {
    return parameters.get("user");
  }

  /** PostgreSQL defaults the database to the user name. */
  public String database() {
    String db = parameters.get("database");
    return db == null || db.isEmpty() ? user() : db;
  }

  /** Decodes what follows the int32 protocol version. */
  public static StartupMessage decode(int version, ByteBuf body) {
    Map<String, String> parameters = new LinkedHashMap<>();
    while (true) {
      if (!body.isReadable()) {
        throw new ProtocolException("startup packet has no terminator");
      }
      if (body.getByte(body.readerIndex()) == 0) {
        body.skipBytes(1);
        break;
      }
      String name = Frames.readCString(body);
      if (!body.isReadable()) {
        throw new ProtocolException("startup parameter \"" + name + "\" has no value");
      }
      parameters.put(name, Frames.readCString(body));
    }
    if (body.isReadable()) {
      throw new ProtocolException("startup packet has trailing bytes");
    }
    return new StartupMessage(version, parameters);
  }

  public ByteBuf encode(ByteBufAllocator alloc) {
    ByteBuf buf = alloc.buffer();
    buf.writeInt(0).writeInt(protocolVersion);
    parameters.forEach(
        (name, value) -> {
          Frames.writeCString(buf, name);
          Frames.writeCString(buf, value);
        });
    buf.writeByte(0);
    return buf.setInt(0, buf.writerIndex());
  }
}
