package org.cryoprotect.proxy.testing;

import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A deliberately dumb blocking protocol client for tests that must send what no driver would: raw
 * bytes, broken lengths, unknown types. Reads whole messages back for assertions.
 */
public final class WireClient implements AutoCloseable {
  /** One backend message; {@code type} is 0 for the single-byte encryption answers. */
  public record Message(char type, byte[] body) {
    /** For 'E'/'N': the value of one field, e.g. 'C' for the SQLSTATE. */
    public String field(char code) {
      int i = 0;
      while (i < body.length && body[i] != 0) {
        char c = (char) body[i];
        int end = i + 1;
        while (body[end] != 0) {
          end++;
        }
        if (c == code) {
          return new String(body, i + 1, end - i - 1, StandardCharsets.UTF_8);
        }
        i = end + 1;
      }
      return null;
    }

    public String sqlState() {
      return field('C');
    }

    public int authCode() {
      return ByteBuffer.wrap(body).getInt();
    }

    /** For 'E'/'N': the non-localized severity (field 'V'), e.g. ERROR or FATAL. */
    public String severity() {
      String v = field('V');
      return v != null ? v : field('S');
    }

    /** For 'Z': the transaction status, 'I', 'T' or 'E'. */
    public char status() {
      return (char) body[0];
    }

    /** For 'C': the command tag, e.g. "UPDATE 1" or "ROLLBACK". */
    public String tag() {
      return new String(body, 0, body.length - 1, StandardCharsets.UTF_8);
    }

    /** For 'D': the column values as text, null for SQL NULL. */
    public List<String> texts() {
      ByteBuffer b = ByteBuffer.wrap(body);
      int count = b.getShort();
      List<String> values = new ArrayList<>(count);
      for (int i = 0; i < count; i++) {
        int len = b.getInt();
        if (len < 0) {
          values.add(null);
          continue;
        }
        byte[] v = new byte[len];
        b.get(v);
        values.add(new String(v, StandardCharsets.UTF_8));
      }
      return values;
    }

    @Override
    public String toString() {
      return switch (type) {
        case 'E', 'N' -> type + "(" + severity() + " " + sqlState() + " " + field('M') + ")";
        case 'Z' -> "Z(" + status() + ")";
        case 'C' -> "C(" + tag() + ")";
        case 'D' -> "D" + texts();
        default -> String.valueOf(type);
      };
    }
  }

  /**
   * The answer to one request: every message up to ReadyForQuery, or up to the connection's end
   * ({@code closed}) when the peer closed it first.
   */
  public record Reply(List<Message> messages, boolean closed) {
    public List<Message> errors() {
      return messages.stream().filter(m -> m.type() == 'E').toList();
    }

    /** The last ErrorResponse, or null: the error of the request (earlier ones may be stray). */
    public Message error() {
      List<Message> errors = errors();
      return errors.isEmpty() ? null : errors.get(errors.size() - 1);
    }

    public List<Message> notices() {
      return messages.stream().filter(m -> m.type() == 'N').toList();
    }

    public boolean hasFatal() {
      return errors().stream().anyMatch(e -> "FATAL".equals(e.severity()));
    }

    /** The ReadyForQuery status, or 0 when the connection closed first. */
    public char status() {
      return closed || messages.isEmpty() ? 0 : messages.get(messages.size() - 1).status();
    }

    public List<String> tags() {
      return messages.stream().filter(m -> m.type() == 'C').map(Message::tag).toList();
    }

    public List<List<String>> rows() {
      return messages.stream().filter(m -> m.type() == 'D').map(Message::texts).toList();
    }

    @Override
    public String toString() {
      return messages + (closed ? " <closed>" : "");
    }
  }

  /** The cancel key of BackendKeyData: what a CancelRequest must quote. */
  public record KeyData(int processId, int secretKey) {}

  private final Socket socket;
  private final DataInputStream in;
  private final OutputStream out;
  private volatile KeyData keyData;

  public WireClient(int port) throws IOException {
    socket = new Socket();
    socket.connect(new InetSocketAddress("127.0.0.1", port), 5_000);
    socket.setSoTimeout(10_000);
    socket.setTcpNoDelay(true);
    in = new DataInputStream(socket.getInputStream());
    out = socket.getOutputStream();
  }

  public WireClient timeout(int millis) throws IOException {
    socket.setSoTimeout(millis);
    return this;
  }

  public WireClient send(byte[] bytes) throws IOException {
    out.write(bytes);
    out.flush();
    return this;
  }

  public static byte[] startupPacket(int version, Map<String, String> params) {
    ByteBuffer buf = ByteBuffer.allocate(8 + 1024);
    buf.putInt(0).putInt(version);
    params.forEach(
        (k, v) -> {
          buf.put(k.getBytes(StandardCharsets.UTF_8)).put((byte) 0);
          buf.put(v.getBytes(StandardCharsets.UTF_8)).put((byte) 0);
        });
    buf.put((byte) 0);
    buf.putInt(0, buf.position());
    byte[] packet = new byte[buf.position()];
    buf.flip().get(packet);
    return packet;
  }

  public static Map<String, String> params(String user, String database) {
    Map<String, String> params = new LinkedHashMap<>();
    params.put("user", user);
    params.put("database", database);
    return params;
  }

  public static byte[] message(char type, byte[] body) {
    return ByteBuffer.allocate(5 + body.length)
        .put((byte) type)
        .putInt(4 + body.length)
        .put(body)
        .array();
  }

  public static byte[] query(String sql) {
    byte[] text = (sql + "\0").getBytes(StandardCharsets.UTF_8);
    return message('Q', text);
  }

  /** Sends a 3.0 StartupMessage; with trust auth this logs in. */
  public WireClient startup(String user, String database) throws IOException {
    return send(startupPacket(3 << 16, params(user, database)));
  }

  public Message read() throws IOException {
    char type = (char) in.readUnsignedByte();
    int length = in.readInt();
    byte[] body = new byte[length - 4];
    in.readFully(body);
    if (type == 'K' && body.length >= 8) {
      ByteBuffer b = ByteBuffer.wrap(body);
      keyData = new KeyData(b.getInt(), b.getInt());
    }
    return new Message(type, body);
  }

  /** The BackendKeyData of the login, once read. */
  public KeyData keyData() {
    return keyData;
  }

  /** Every message up to and including the next ReadyForQuery. */
  public List<Message> readReply() throws IOException {
    List<Message> messages = new ArrayList<>();
    while (true) {
      Message m = read();
      messages.add(m);
      if (m.type() == 'Z') {
        return messages;
      }
    }
  }

  /**
   * Sends {@code bytes} and reads the reply up to ReadyForQuery; a connection the peer closes (or
   * resets) first gives a reply marked closed, with what arrived before.
   */
  public Reply ask(byte[]... bytes) throws IOException {
    List<Message> messages = new ArrayList<>();
    try {
      send(concat(bytes));
      while (true) {
        Message m = read();
        messages.add(m);
        if (m.type() == 'Z') {
          return new Reply(messages, false);
        }
      }
    } catch (EOFException | java.net.SocketException e) {
      return new Reply(messages, true);
    }
  }

  /** {@link #ask} with one simple Query. */
  public Reply ask(String sql) throws IOException {
    return ask(query(sql));
  }

  /** Sends {@code bytes} (e.g. a batch ending in Sync) and reads the reply up to ReadyForQuery. */
  public List<Message> exchange(byte[]... bytes) throws IOException {
    send(concat(bytes));
    return readReply();
  }

  // ---- extended query protocol (protocol 3.0 "Message Formats"), text formats throughout

  public static byte[] parse(String statement, String sql, int... paramTypes) {
    byte[] name = cstring(statement);
    byte[] text = cstring(sql);
    ByteBuffer b = ByteBuffer.allocate(name.length + text.length + 2 + 4 * paramTypes.length);
    b.put(name).put(text).putShort((short) paramTypes.length);
    for (int oid : paramTypes) {
      b.putInt(oid);
    }
    return message('P', b.array());
  }

  /** Bind with text parameters (null for SQL NULL) and text results. */
  public static byte[] bind(String portal, String statement, String... params) {
    return bind(portal, statement, (short) 0, params);
  }

  /** Bind with text parameters and every result column in {@code resultFormat} (1: binary). */
  public static byte[] bind(String portal, String statement, short resultFormat, String... params) {
    byte[] p = cstring(portal);
    byte[] s = cstring(statement);
    int size = p.length + s.length + 2 + 2 + 4;
    List<byte[]> values = new ArrayList<>();
    for (String param : params) {
      byte[] v = param == null ? null : param.getBytes(StandardCharsets.UTF_8);
      values.add(v);
      size += 4 + (v == null ? 0 : v.length);
    }
    ByteBuffer b = ByteBuffer.allocate(size);
    b.put(p).put(s).putShort((short) 0).putShort((short) params.length);
    for (byte[] v : values) {
      if (v == null) {
        b.putInt(-1);
      } else {
        b.putInt(v.length).put(v);
      }
    }
    b.putShort((short) 1).putShort(resultFormat);
    return message('B', b.array());
  }

  /** {@code kind} 'S' (statement) or 'P' (portal). */
  public static byte[] describe(char kind, String name) {
    return target('D', kind, name);
  }

  public static byte[] close(char kind, String name) {
    return target('C', kind, name);
  }

  public static byte[] execute(String portal, int maxRows) {
    byte[] p = cstring(portal);
    return message('E', ByteBuffer.allocate(p.length + 4).put(p).putInt(maxRows).array());
  }

  public static byte[] sync() {
    return message('S', new byte[0]);
  }

  public static byte[] flush() {
    return message('H', new byte[0]);
  }

  /** A CancelRequest packet, sent on a connection of its own. */
  public static byte[] cancelRequest(KeyData key) {
    return ByteBuffer.allocate(16)
        .putInt(16)
        .putInt(80877102)
        .putInt(key.processId())
        .putInt(key.secretKey())
        .array();
  }

  /** Sends a CancelRequest for {@code key} to {@code port} and waits until the peer closes. */
  public static void cancel(int port, KeyData key) throws IOException {
    try (WireClient c = new WireClient(port)) {
      c.send(cancelRequest(key));
      c.closedByPeer();
    }
  }

  public static byte[] concat(byte[]... parts) {
    int n = 0;
    for (byte[] p : parts) {
      n += p.length;
    }
    byte[] all = new byte[n];
    int at = 0;
    for (byte[] p : parts) {
      System.arraycopy(p, 0, all, at, p.length);
      at += p.length;
    }
    return all;
  }

  private static byte[] target(char type, char kind, String name) {
    byte[] n = cstring(name);
    return message(type, ByteBuffer.allocate(1 + n.length).put((byte) kind).put(n).array());
  }

  private static byte[] cstring(String s) {
    return (s + "\0").getBytes(StandardCharsets.UTF_8);
  }

  public int readByte() throws IOException {
    return in.read();
  }

  /** Reads until ReadyForQuery; returns the first ErrorResponse seen, or null. */
  public Message readUntilReady() throws IOException {
    Message error = null;
    while (true) {
      Message m = read();
      if (m.type() == 'E' && error == null) {
        error = m;
      }
      if (m.type() == 'Z') {
        return error;
      }
    }
  }

  /** Reads until the server sends an ErrorResponse and returns it. */
  public Message readError() throws IOException {
    while (true) {
      Message m = read();
      if (m.type() == 'E') {
        return m;
      }
    }
  }

  /** True when the peer closed the connection (after draining what it sent). */
  public boolean closedByPeer() throws IOException {
    try {
      while (true) {
        if (in.read() < 0) {
          return true;
        }
      }
    } catch (EOFException e) {
      return true;
    } catch (SocketTimeoutException e) {
      return false;
    } catch (IOException e) {
      return true; // connection reset counts as closed
    }
  }

  @Override
  public void close() throws IOException {
    socket.close();
  }
}
