package org.cryoprotect.proxy.audit;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.util.List;

/**
 * One audited statement (DESIGN §6): who ran what, where, for how long, with what outcome. {@code
 * seq} is its place in the journal, given by the journal; {@code loggedAtMicros} the completion
 * time in microseconds since the epoch (the database's timestamp precision, so a record written
 * twice after an outage is the same row). {@code database} is the proxy's database name: the writer
 * stores the record in that database. {@code rowCount} and {@code sqlstate} are null when they do
 * not apply (a command without a row count; a statement that succeeded). {@code parameters} is null
 * unless {@code audit.parameters} is on and the statement was bound: then a JSON array of the
 * Bind's values, text as sent, binary as {@code \x} and hex, SQL NULL as null.
 */
public record AuditRecord(
    long seq,
    long loggedAtMicros,
    String sub,
    String jti,
    String role,
    List<String> scopes,
    String clientAddr,
    String database,
    String statement,
    String parameters,
    double durationMs,
    Long rowCount,
    String sqlstate) {

  private static final ObjectMapper JSON = new ObjectMapper();

  AuditRecord withSeq(long s) {
    return new AuditRecord(
        s,
        loggedAtMicros,
        sub,
        jti,
        role,
        scopes,
        clientAddr,
        database,
        statement,
        parameters,
        durationMs,
        rowCount,
        sqlstate);
  }

  byte[] toJson() {
    try {
      return JSON.writeValueAsBytes(this);
    } catch (IOException e) {
      throw new IllegalStateException("audit record not serialisable", e);
    }
  }

  static AuditRecord fromJson(byte[] json) throws IOException {
    return JSON.readValue(json, AuditRecord.class);
  }

  /** The row count of a CommandComplete tag ({@code INSERT 0 5}, {@code SELECT 3}), or null. */
  public static Long rowCount(String tag) {
    int space = tag.lastIndexOf(' ');
    if (space < 0) {
      return null;
    }
    try {
      return Long.parseLong(tag.substring(space + 1));
    } catch (NumberFormatException e) {
      return null;
    }
  }
}
