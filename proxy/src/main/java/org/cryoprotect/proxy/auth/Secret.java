package org.cryoprotect.proxy.auth;

import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.Base64;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * What the proxy knows of a user's password, in one of the three forms PostgreSQL itself stores. No
 * {@code toString} here ever prints the secret: an md5 hash or a SCRAM key is as good as the
 * password for logging in (pass-the-hash), so all three are redacted alike.
 */
public sealed interface Secret {

  /**
   * Recognises a secret the way PostgreSQL's get_password_type does: a well-formed SCRAM verifier,
   * else a well-formed md5 hash, else the text is a plaintext password. Something that merely looks
   * like a verifier but does not parse is therefore a (strange) plaintext password.
   */
  static Secret parse(String text) {
    Objects.requireNonNull(text, "text");
    Scram scram = Scram.tryParse(text);
    if (scram != null) {
      return scram;
    }
    if (Md5.isHash(text)) {
      return new Md5(text);
    }
    return new Plain(text);
  }

  record Plain(String password) implements Secret {
    public Plain {
      Objects.requireNonNull(password, "password");
    }

    /** A fresh verifier for answering SCRAM clients when only the plaintext is configured. */
    public Scram toScram() {
      return Scram.derive(password);
    }

    @Override
    public String toString() {
      return "Plain[***]";
    }
  }

  /** PostgreSQL's "md5" + hex(md5(password || username)). */
  record Md5(String hash) implements Secret {
    private static final Pattern FORMAT = Pattern.compile("md5[0-9a-f]{32}");

    public Md5 {
      if (!isHash(hash)) {
        throw new IllegalArgumentException("an md5 secret is \"md5\" followed by 32 lowercase hex");
      }
    }

    static boolean isHash(String text) {
      return text != null && FORMAT.matcher(text).matches();
    }

    @Override
    public String toString() {
      return "Md5[***]";
    }
  }

  /** A SCRAM-SHA-256 verifier as in pg_authid: enough to check a proof, not to compute one. */
  record Scram(int iterations, byte[] salt, byte[] storedKey, byte[] serverKey) implements Secret {
    public static final int DEFAULT_ITERATIONS = 4096;
    // PostgreSQL's SCRAM_DEFAULT_SALT_LEN.
    public static final int DEFAULT_SALT_LENGTH = 16;

    private static final SecureRandom RANDOM = new SecureRandom();
    private static final String PREFIX = "SCRAM-SHA-256$";
    private static final Pattern FORMAT =
        Pattern.compile(
            Pattern.quote(PREFIX)
                + "([0-9]{1,10}):([A-Za-z0-9+/=]+)\\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)");

    // Arrays are copied in and out so that a record, once made, cannot be changed by anyone.
    public Scram {
      if (iterations <= 0) {
        throw new IllegalArgumentException("SCRAM iteration count must be positive");
      }
      if (salt == null || salt.length == 0) {
        throw new IllegalArgumentException("SCRAM salt must not be empty");
      }
      if (storedKey == null || storedKey.length != ScramCrypto.KEY_LENGTH) {
        throw new IllegalArgumentException("SCRAM StoredKey must be 32 bytes");
      }
      if (serverKey == null || serverKey.length != ScramCrypto.KEY_LENGTH) {
        throw new IllegalArgumentException("SCRAM ServerKey must be 32 bytes");
      }
      salt = salt.clone();
      storedKey = storedKey.clone();
      serverKey = serverKey.clone();
    }

    /** The one key derivation of the proxy (RFC 5802 section 3); everything else reuses it. */
    public static Scram derive(String password, byte[] salt, int iterations) {
      byte[] salted = ScramCrypto.saltedPassword(password, salt, iterations);
      try {
        byte[] clientKey = ScramCrypto.hmac(salted, "Client Key");
        byte[] serverKey = ScramCrypto.hmac(salted, "Server Key");
        return new Scram(iterations, salt, ScramCrypto.sha256(clientKey), serverKey);
      } finally {
        Arrays.fill(salted, (byte) 0);
      }
    }

    /** A random salt and PostgreSQL's default iteration count, as CREATE ROLE ... PASSWORD does. */
    public static Scram derive(String password) {
      byte[] salt = new byte[DEFAULT_SALT_LENGTH];
      RANDOM.nextBytes(salt);
      return derive(password, salt, DEFAULT_ITERATIONS);
    }

    /**
     * A verifier nobody can satisfy, for users that do not exist. Like PostgreSQL's
     * scram_mock_salt, the salt is a keyed hash of the user name, so that asking twice for the same
     * unknown user shows the same salt and the answer does not reveal which users exist. {@code
     * mockKey} is random per proxy process and never leaves it. No PBKDF2 is run: the exchange is
     * bound to fail anyway, and cheap mocks do not hand attackers a CPU lever.
     */
    public static Scram mock(String user, byte[] mockKey) {
      byte[] salt = mockSalt(user, mockKey);
      return new Scram(
          DEFAULT_ITERATIONS,
          salt,
          ScramCrypto.hmac(mockKey, "stored\0" + user),
          ScramCrypto.hmac(mockKey, "server\0" + user));
    }

    /**
     * The salt {@link #mock} shows for {@code user}: also the salt a plain-text secret's verifier
     * is derived with, so that a user with a plain password shows a stable salt too. With a fresh
     * salt per attempt, two attempts would tell such users from unknown ones.
     */
    public static byte[] mockSalt(String user, byte[] mockKey) {
      return Arrays.copyOf(ScramCrypto.hmac(mockKey, "salt\0" + user), DEFAULT_SALT_LENGTH);
    }

    static Scram tryParse(String text) {
      Matcher m = FORMAT.matcher(text);
      if (!m.matches()) {
        return null;
      }
      try {
        long iterations = Long.parseLong(m.group(1));
        byte[] storedKey = Base64.getDecoder().decode(m.group(3));
        byte[] serverKey = Base64.getDecoder().decode(m.group(4));
        byte[] salt = Base64.getDecoder().decode(m.group(2));
        if (iterations <= 0
            || iterations > Integer.MAX_VALUE
            || salt.length == 0
            || storedKey.length != ScramCrypto.KEY_LENGTH
            || serverKey.length != ScramCrypto.KEY_LENGTH) {
          return null;
        }
        return new Scram((int) iterations, salt, storedKey, serverKey);
      } catch (IllegalArgumentException badBase64) {
        return null;
      }
    }

    /** The pg_authid text form, which {@link Secret#parse} reads back. */
    public String format() {
      Base64.Encoder b64 = Base64.getEncoder();
      return PREFIX
          + iterations
          + ':'
          + b64.encodeToString(salt)
          + '$'
          + b64.encodeToString(storedKey)
          + ':'
          + b64.encodeToString(serverKey);
    }

    @Override
    public byte[] salt() {
      return salt.clone();
    }

    @Override
    public byte[] storedKey() {
      return storedKey.clone();
    }

    @Override
    public byte[] serverKey() {
      return serverKey.clone();
    }

    @Override
    public boolean equals(Object o) {
      return o instanceof Scram other
          && iterations == other.iterations
          && Arrays.equals(salt, other.salt)
          && MessageDigest.isEqual(storedKey, other.storedKey)
          && MessageDigest.isEqual(serverKey, other.serverKey);
    }

    @Override
    public int hashCode() {
      // Keys stay out of the hash so that it leaks nothing about them.
      return 31 * iterations + Arrays.hashCode(salt);
    }

    @Override
    public String toString() {
      return "Scram[iterations=" + iterations + ", ***]";
    }
  }
}
