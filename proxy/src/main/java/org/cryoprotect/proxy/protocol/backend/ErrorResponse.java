package org.cryoprotect.proxy.protocol.backend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import java.util.LinkedHashMap;
import java.util.Map;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.SqlState;

/**
 * ErrorResponse ('E') and NoticeResponse ('N') share one body: (field byte, string)* then NUL.
 * Fields are keyed by the protocol's field codes ('S', 'V', 'C', 'M', 'D', 'H', ...).
 */
public record ErrorResponse(char type, Map<Character, String> fields) {
  public static final char TYPE = 'E';
  public static final char NOTICE_TYPE = 'N';

  public enum Severity {
    ERROR,
    FATAL,
    WARNING,
    NOTICE
  }

  /** An error raised by the proxy itself; the message gets the {@code cryoproxy:} prefix. */
  public static ErrorResponse of(Severity severity, SqlState state, String message) {
    Map<Character, String> fields = new LinkedHashMap<>();
    fields.put('S', severity.name());
    fields.put('V', severity.name());
    fields.put('C', state.code());
    fields.put('M', "cryoproxy: " + message);
    return new ErrorResponse(
        severity == Severity.ERROR || severity == Severity.FATAL ? TYPE : NOTICE_TYPE, fields);
  }

  public static ErrorResponse decode(char type, ByteBuf body) {
    Map<Character, String> fields = new LinkedHashMap<>();
    while (body.isReadable()) {
      byte code = body.readByte();
      if (code == 0) {
        break;
      }
      fields.put((char) code, Frames.readCString(body));
    }
    return new ErrorResponse(type, fields);
  }

  /** Peeks the SQLSTATE of a whole framed 'E' message; null when it has none. */
  public static String sqlState(ByteBuf frame) {
    return decode(TYPE, Frames.body(frame)).sqlState();
  }

  public String sqlState() {
    return fields.get('C');
  }

  public String message() {
    return fields.get('M');
  }

  public String severity() {
    return fields.getOrDefault('V', fields.get('S'));
  }

  public ErrorResponse withSeverity(Severity severity) {
    Map<Character, String> copy = new LinkedHashMap<>(fields);
    copy.put('S', severity.name());
    copy.put('V', severity.name());
    return new ErrorResponse(type, copy);
  }

  public ErrorResponse withDetail(String detail) {
    Map<Character, String> copy = new LinkedHashMap<>(fields);
    copy.put('D', detail);
    return new ErrorResponse(type, copy);
  }

  public ByteBuf encode(ByteBufAllocator alloc) {
    ByteBuf buf = alloc.buffer();
    int at = Frames.begin(buf, type);
    fields.forEach(
        (code, value) -> {
          buf.writeByte(code);
          Frames.writeCString(buf, value);
        });
    buf.writeByte(0);
    return Frames.finish(buf, at);
  }

  @Override
  public String toString() {
    return severity() + " " + sqlState() + " " + message();
  }
}
