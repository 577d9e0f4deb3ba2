package org.cryoprotect.proxy.sql;

import io.netty.buffer.ByteBuf;
import java.util.EnumSet;
import java.util.Locale;
import java.util.Set;
import org.cryoprotect.proxy.protocol.Frames;

/**
 * A lexical look at client SQL for what matters to pooling: statements that may change session
 * state (so it is captured and re-applied later) and state that cannot be moved between server
 * connections (so the client is pinned). It skips literals, quoted identifiers, comments and dollar
 * quotes, and reads only the leading keywords of each statement: it never parses SQL.
 *
 * <p>A false positive costs one extra round trip or a pin, never correctness. What it cannot see is
 * a session-level change made inside a function body (for example {@code set_config(..., false)} in
 * PL/pgSQL); for parameters the server reports (TimeZone, DateStyle, ...) the ParameterStatus it
 * sends still reveals the change.
 */
public final class SqlScan {
  /** State that pins a client to its server connection until released. */
  public enum Pin {
    LISTEN,
    TEMP_TABLE,
    ADVISORY_LOCK,
    HOLD_CURSOR,
    PREPARE
  }

  /** What a query text may do; {@code releases} lists pins it lifts. */
  public record Effects(
      boolean changesSession, Set<Pin> pins, Set<Pin> releases, boolean dropsPreparedStatements) {
    static final Effects NONE =
        new Effects(false, EnumSet.noneOf(Pin.class), EnumSet.noneOf(Pin.class), false);

    public boolean isNone() {
      return !changesSession && pins.isEmpty() && releases.isEmpty() && !dropsPreparedStatements;
    }
  }

  private SqlScan() {}

  /** Statements that start with one of these and stand alone can change nothing we track. */
  private static final java.util.Set<String> PLAIN =
      java.util.Set.of(
          "select",
          "insert",
          "update",
          "delete",
          "with",
          "values",
          "begin",
          "start",
          "commit",
          "end",
          "rollback",
          "abort",
          "savepoint",
          "release",
          "copy",
          "table",
          "fetch",
          "move",
          "explain",
          "lock",
          "truncate",
          "merge");

  /**
   * A Simple Query frame whose text is one NUL-terminated string {@link #isPlain(ByteBuf, int,
   * int)} passes. Nothing is decoded.
   */
  public static boolean isPlainQuery(ByteBuf frame) {
    int from = frame.readerIndex() + Frames.HEADER;
    int last = frame.writerIndex() - 1;
    return last >= from
        && frame.getByte(last) == 0
        && frame.indexOf(from, last, (byte) 0) < 0
        && isPlain(frame, from, last);
  }

  /**
   * {@link #scan} would say {@link Effects#isNone none} for the UTF-8 query text in {@code
   * buf[from, to)}: the same rule as for a String, read from the bytes without decoding them. False
   * means "decode and scan": any byte outside ASCII in the leading keyword or the tail after a ';'
   * makes it false, never a wrong true.
   */
  public static boolean isPlain(ByteBuf buf, int from, int to) {
    int i = from;
    while (i < to && isAsciiSpace(buf.getByte(i))) {
      i++;
    }
    int start = i;
    while (i < to && isAsciiLetter(buf.getByte(i))) {
      i++;
    }
    if (i == start || i - start > 9 || (i < to && buf.getByte(i) < 0)) {
      return false; // a non-ASCII byte right after the word may continue it
    }
    if (!plainKeyword(buf, start, i)) {
      return false;
    }
    if ((buf.getByte(start) | 0x20) == 's' && containsLower(buf, i, to, "into")) {
      return false; // SELECT ... INTO may create a table: scan it
    }
    int semicolon = buf.indexOf(i, to, (byte) ';');
    if (semicolon >= 0) {
      for (int j = semicolon + 1; j < to; j++) {
        if (!isAsciiSpace(buf.getByte(j))) {
          return false;
        }
      }
    }
    // Both function-name fragments contain '_': look only around each '_' (a fast search).
    for (int k = buf.indexOf(i, to, (byte) '_'); k >= 0; k = buf.indexOf(k + 1, to, (byte) '_')) {
      if ((k - 3 >= from && matchesLower(buf, k - 3, to, "set_config"))
          || (k - 8 >= from && matchesLower(buf, k - 8, to, "advisory_"))) {
        return false;
      }
    }
    return true;
  }

  // Transaction control at the start of a statement (DESIGN §2: what a lost server connection
  // means for the client depends on whether a transaction was open or committing).
  /** BEGIN or START TRANSACTION. */
  public static final int BEGINS = 1;

  /** COMMIT, END, PREPARE TRANSACTION, COMMIT PREPARED: an outcome that may be durable. */
  public static final int COMMITS = 2;

  /** ROLLBACK or ABORT (not ROLLBACK TO SAVEPOINT, not ROLLBACK PREPARED). */
  public static final int ROLLS_BACK = 4;

  /**
   * The transaction control of a text {@link #isPlain(ByteBuf, int, int)} passed (one statement):
   * read from its first two words in the bytes, nothing decoded.
   */
  public static int transactionControl(ByteBuf buf, int from, int to) {
    int i = from;
    while (i < to && isAsciiSpace(buf.getByte(i))) {
      i++;
    }
    int start = i;
    while (i < to && isAsciiLetter(buf.getByte(i))) {
      i++;
    }
    int end = i;
    while (i < to && isAsciiSpace(buf.getByte(i))) {
      i++;
    }
    int next = i;
    while (i < to && isAsciiLetter(buf.getByte(i))) {
      i++;
    }
    String first = lowerWord(buf, start, end, FIRST_WORDS);
    String second = lowerWord(buf, next, i, SECOND_WORDS);
    return first == null ? 0 : control(first, second == null ? "" : second);
  }

  /** The transaction control of every statement of {@code sql}, or-ed. */
  public static int transactionControl(String sql) {
    int bits = 0;
    for (String[] words : new Statements(sql.toLowerCase(Locale.ROOT))) {
      bits |= control(words[0], words[1]);
    }
    return bits;
  }

  /**
   * The transaction control of {@code sql} when it is one statement (a trailing ';' allowed), -1
   * when it holds several: a client whose transaction failed may end it with one statement alone.
   */
  public static int singleStatementControl(String sql) {
    int bits = -1;
    for (String[] words : new Statements(sql.toLowerCase(Locale.ROOT))) {
      if (bits >= 0) {
        return -1;
      }
      bits = control(words[0], words[1]);
    }
    return Math.max(bits, 0);
  }

  private static final String[] FIRST_WORDS = {
    "begin", "start", "commit", "end", "prepare", "rollback", "abort"
  };
  private static final String[] SECOND_WORDS = {"transaction", "to", "prepared"};

  private static String lowerWord(ByteBuf buf, int start, int end, String[] words) {
    for (String word : words) {
      if (word.length() == end - start && matchesLower(buf, start, end, word)) {
        return word;
      }
    }
    return null;
  }

  private static int control(String first, String second) {
    return switch (first) {
      case "begin" -> BEGINS;
      case "start" -> second.equals("transaction") ? BEGINS : 0;
      case "commit", "end" -> COMMITS;
      case "prepare" -> second.equals("transaction") ? COMMITS : 0;
      case "rollback" -> second.equals("to") || second.equals("prepared") ? 0 : ROLLS_BACK;
      case "abort" -> ROLLS_BACK;
      default -> 0;
    };
  }

  private static boolean plainKeyword(ByteBuf buf, int start, int end) {
    for (String keyword : PLAIN) {
      if (keyword.length() == end - start && matchesLower(buf, start, end, keyword)) {
        return true;
      }
    }
    return false;
  }

  private static boolean containsLower(ByteBuf buf, int from, int to, String word) {
    for (int k = from; k + word.length() <= to; k++) {
      if (matchesLower(buf, k, to, word)) {
        return true;
      }
    }
    return false;
  }

  /** {@code buf[at...]} equals lower-case ASCII {@code word}, ignoring the case of letters. */
  private static boolean matchesLower(ByteBuf buf, int at, int to, String word) {
    if (to - at < word.length()) {
      return false;
    }
    for (int k = 0; k < word.length(); k++) {
      byte b = buf.getByte(at + k);
      int lower = isAsciiLetter(b) ? b | 0x20 : b;
      if (lower != word.charAt(k)) {
        return false;
      }
    }
    return true;
  }

  private static boolean isAsciiLetter(byte b) {
    int lower = b | 0x20;
    return lower >= 'a' && lower <= 'z';
  }

  /** What {@link Character#isWhitespace} accepts below 0x80. */
  private static boolean isAsciiSpace(byte b) {
    return b == ' ' || (b >= 0x09 && b <= 0x0d) || (b >= 0x1c && b <= 0x1f);
  }

  /**
   * What {@code sql} may do, statement by statement. The hot path does not come here: {@link
   * #isPlain(ByteBuf, int, int)} passes the usual statements from the message bytes.
   */
  public static Effects scan(String sql) {
    boolean session = false;
    boolean drops = false;
    EnumSet<Pin> pins = EnumSet.noneOf(Pin.class);
    EnumSet<Pin> releases = EnumSet.noneOf(Pin.class);
    String lower = sql.toLowerCase(Locale.ROOT);
    if (lower.contains("set_config")) {
      session = true;
    }
    if (lower.contains("advisory_lock")) {
      pins.add(Pin.ADVISORY_LOCK);
    }
    if (lower.contains("advisory_unlock_all")) {
      releases.add(Pin.ADVISORY_LOCK);
    }
    for (String[] words : new Statements(lower)) {
      String first = words[0];
      String second = words[1];
      switch (first) {
        case "set" -> {
          if (!second.equals("local")
              && !second.equals("transaction")
              && !second.equals("constraints")) {
            session = true;
          }
        }
        case "reset" -> session = true;
        // Opaque: a body or a stored statement may change settings or make temporary objects;
        // the snapshot after the unit says what they did (SessionSettings.SNAPSHOT_SQL).
        case "do", "call", "execute" -> session = true;
        case "select" -> {
          if (lower.contains("into")) {
            session = true;
          }
        }
        case "discard" -> {
          session = true;
          if (second.equals("all")) {
            releases.addAll(EnumSet.allOf(Pin.class));
            drops = true;
          } else if (second.equals("temp") || second.equals("temporary")) {
            releases.add(Pin.TEMP_TABLE);
          }
        }
        case "listen" -> pins.add(Pin.LISTEN);
        case "unlisten" -> {
          if (second.equals("*")) {
            releases.add(Pin.LISTEN);
          }
        }
        case "create" -> {
          if (isTemp(second) || (isScope(second) && isTemp(words[2]))) {
            pins.add(Pin.TEMP_TABLE);
          }
        }
        case "declare" -> {
          if (String.join(" ", words).contains("with hold") || hasHold(lower)) {
            pins.add(Pin.HOLD_CURSOR);
          }
        }
        case "close" -> {
          if (second.equals("all")) {
            releases.add(Pin.HOLD_CURSOR);
          }
        }
        case "prepare" -> {
          if (!second.equals("transaction")) {
            pins.add(Pin.PREPARE);
          }
        }
        case "deallocate" -> {
          if (second.equals("all") || (second.equals("prepare") && words[2].equals("all"))) {
            releases.add(Pin.PREPARE);
            drops = true;
          }
        }
        default -> {}
      }
    }
    if (!session && !drops && pins.isEmpty() && releases.isEmpty()) {
      return Effects.NONE;
    }
    return new Effects(session, pins, releases, drops);
  }

  private static boolean isTemp(String word) {
    return word.equals("temp") || word.equals("temporary");
  }

  private static boolean isScope(String word) {
    return word.equals("global") || word.equals("local") || word.equals("unlogged");
  }

  private static boolean hasHold(String lower) {
    return lower.contains(" with hold") || lower.contains("\nwith hold");
  }

  /** The first three words of each statement, "" when absent; code only, never literals. */
  private static final class Statements implements Iterable<String[]> {
    private final String sql;

    Statements(String sql) {
      this.sql = sql;
    }

    @Override
    public java.util.Iterator<String[]> iterator() {
      java.util.List<String[]> all = new java.util.ArrayList<>();
      String[] words = new String[] {"", "", ""};
      int count = 0;
      int i = 0;
      int n = sql.length();
      while (i < n) {
        char c = sql.charAt(i);
        if (c == ';') {
          if (count > 0) {
            all.add(words);
          }
          words = new String[] {"", "", ""};
          count = 0;
          i++;
        } else if (c == '-' && i + 1 < n && sql.charAt(i + 1) == '-') {
          int end = sql.indexOf('\n', i);
          i = end < 0 ? n : end + 1;
        } else if (c == '/' && i + 1 < n && sql.charAt(i + 1) == '*') {
          i = skipBlockComment(i + 2);
        } else if (c == '\'' || c == '"') {
          int end = sql.indexOf(c, i + 1);
          while (end > 0 && end + 1 < n && sql.charAt(end + 1) == c) {
            end = sql.indexOf(c, end + 2); // doubled quote inside
          }
          i = end < 0 ? n : end + 1;
          count = Math.max(count, 1); // a literal is part of a statement
        } else if (c == '$' && dollarTag(i) != null) {
          String tag = dollarTag(i);
          int end = sql.indexOf(tag, i + tag.length());
          i = end < 0 ? n : end + tag.length();
          count = Math.max(count, 1);
        } else if (Character.isLetter(c) || c == '_' || c == '*') {
          int start = i;
          while (i < n
              && (Character.isLetterOrDigit(sql.charAt(i))
                  || sql.charAt(i) == '_'
                  || sql.charAt(i) == '*')) {
            i++;
          }
          if (count < 3) {
            words[count] = sql.substring(start, i);
          }
          count++;
        } else {
          if (!Character.isWhitespace(c) && count == 0) {
            count = 3; // starts with punctuation, e.g. "(SELECT ...)": not one of ours
            words = new String[] {"", "", ""};
          }
          i++;
        }
      }
      if (count > 0) {
        all.add(words);
      }
      return all.iterator();
    }

    private int skipBlockComment(int i) {
      int depth = 1;
      int n = sql.length();
      while (i < n && depth > 0) {
        if (sql.startsWith("/*", i)) {
          depth++;
          i += 2;
        } else if (sql.startsWith("*/", i)) {
          depth--;
          i += 2;
        } else {
          i++;
        }
      }
      return i;
    }

    /** "$tag$" starting at {@code i}, or null when this '$' is not a dollar quote. */
    private String dollarTag(int i) {
      int j = i + 1;
      int n = sql.length();
      while (j < n && (Character.isLetterOrDigit(sql.charAt(j)) || sql.charAt(j) == '_')) {
        j++;
      }
      if (j < n && sql.charAt(j) == '$' && (j == i + 1 || !Character.isDigit(sql.charAt(i + 1)))) {
        return sql.substring(i, j + 1);
      }
      return null;
    }
  }
}
