package org.cryoprotect.proxy.protocol.frontend;

/**
 * The message types a client may send after startup (protocol "Message Formats", frontend side).
 * Anything else is a protocol violation the proxy answers itself instead of passing it on.
 */
public final class FrontendMessageTypes {
  public static final byte BIND = 'B';
  public static final byte CLOSE = 'C';
  public static final byte COPY_DATA = 'd';
  public static final byte COPY_DONE = 'c';
  public static final byte COPY_FAIL = 'f';
  public static final byte DESCRIBE = 'D';
  public static final byte EXECUTE = 'E';
  public static final byte FLUSH = 'H';
  public static final byte FUNCTION_CALL = 'F';
  public static final byte PARSE = 'P';
  public static final byte PASSWORD = 'p';
  public static final byte QUERY = 'Q';
  public static final byte SYNC = 'S';
  public static final byte TERMINATE = 'X';

  private static final boolean[] KNOWN = new boolean[128];

  static {
    for (byte b : new byte[] {BIND, CLOSE, COPY_DATA, COPY_DONE, COPY_FAIL, DESCRIBE, EXECUTE}) {
      KNOWN[b] = true;
    }
    for (byte b : new byte[] {FLUSH, FUNCTION_CALL, PARSE, PASSWORD, QUERY, SYNC, TERMINATE}) {
      KNOWN[b] = true;
    }
  }

  private FrontendMessageTypes() {}

  public static boolean isKnown(byte type) {
    return type >= 0 && KNOWN[type];
  }
}
