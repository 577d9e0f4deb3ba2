package org.cryoprotect.proxy.frontend;

import org.cryoprotect.proxy.pool.PreparedRegistry;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;

/**
 * One reply (sequence) the server or the proxy still owes a client session, in the order the
 * requests went out. {@link Kind#isLast} says which backend message ends it.
 */
final class Pending {
  enum Kind {
    PARSE,
    BIND,
    DESCRIBE,
    EXECUTE,
    CLOSE,
    SYNC,
    QUERY,
    FUNCTION,
    /** The proxy's own simple query (check, reset): its replies never reach the client. */
    INJECTED,
    /** The client's session settings applied at checkout; recorded on the server when done. */
    APPLY,
    /** The session-state snapshot query; its rows are read by the session. */
    SNAPSHOT,
    /** The WAL position after a write transaction, for read-your-writes; its row is read. */
    LSN,
    /** A reply the proxy owes the client without asking the server: ParseComplete. */
    LOCAL_PARSE_COMPLETE,
    /** CloseComplete for a statement Close answered locally. */
    LOCAL_CLOSE_COMPLETE;

    /** Whether backend message {@code type} ends the replies to a message of this kind. */
    boolean isLast(byte type) {
      return switch (this) {
        case PARSE -> type == '1';
        case BIND -> type == '2';
        case DESCRIBE -> type == 'T' || type == 'n';
        case EXECUTE -> type == 'C' || type == 'I' || type == 's';
        case CLOSE -> type == '3';
        case SYNC, QUERY, FUNCTION, INJECTED, APPLY, SNAPSHOT, LSN -> type == 'Z';
        case LOCAL_PARSE_COMPLETE, LOCAL_CLOSE_COMPLETE -> false;
      };
    }
  }

  final Kind kind;
  final boolean toClient;
  final String statement; // proxy statement name for PARSE and BIND, else null
  PreparedRegistry.Entry entry; // for PARSE: marked verified when the server accepts it
  UnnamedStatement unnamed; // for PARSE of the unnamed statement: the client's statement
  UnnamedStatement previous; // ... and the one it replaced (or a Close dropped), again if skipped
  String clientName; // for PARSE the client asked for (and local Parse/Close): the client's name
  String closed; // for CLOSE of a statement: its server-side name ("" = unnamed), if skipped
  ErrorResponse error; // the proxy failed the batch on purpose: what the client is told instead
  String duplicateOf; // for PARSE: the client's name its 42P05 must say instead of the proxy's
  String sql; // audited sessions, QUERY and EXECUTE: the text it runs (AuditTrail)
  String parameters; // ... the values it was bound with, when audit.parameters is on
  long sentNanos = System.nanoTime(); // when it was sent (audit durations, limits.query_timeout)

  Pending(Kind kind, boolean toClient, String statement) {
    this.kind = kind;
    this.toClient = toClient;
    this.statement = statement;
  }
}
