package org.cryoprotect.proxy.protocol.backend;

import io.netty.buffer.ByteBuf;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.cryoprotect.proxy.protocol.ProtocolException;

/** DataRow ('D'): decoded only for the proxy's own queries, whose columns are text. */
public final class DataRow {
  public static final char TYPE = 'D';

  private DataRow() {}

  /** The columns of a text-format row; SQL NULL is Java null. */
  public static List<String> texts(ByteBuf body) {
    int count = body.readUnsignedShort();
    List<String> values = new ArrayList<>(count);
    for (int i = 0; i < count; i++) {
      int length = body.readInt();
      if (length < 0) {
        values.add(null);
      } else if (length > body.readableBytes()) {
        throw new ProtocolException("DataRow column overruns its message");
      } else {
        values.add(body.readCharSequence(length, StandardCharsets.UTF_8).toString());
      }
    }
    return values;
  }
}
