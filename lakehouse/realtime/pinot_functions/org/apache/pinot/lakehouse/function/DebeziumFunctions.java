package org.apache.pinot.lakehouse.function;

import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import org.apache.pinot.spi.annotations.ScalarFunction;

/**
 * Scalar functions that unpack a Debezium change event in a Pinot ingestion transform, so that table
 * configs need no Groovy (which runs any script a table config holds inside the server).
 *
 * <p>Pinot 0.11 returns null from a built-in function as soon as one argument is null; a delete's
 * {@code after} image is null, so picking "the after image, else the before image" needs these
 * null-aware functions. Pinot registers them by their annotation (its registry scans the
 * {@code org.apache.pinot.*.function.*} packages), under the names given here.
 */
public final class DebeziumFunctions {
    private DebeziumFunctions() {}

    /** The row image of a change: {@code after}, or {@code before} for a delete (null when both are). */
    @ScalarFunction(names = {"cdcRow"}, nullableParameters = true)
    public static Object cdcRow(Object after, Object before) {
        return after != null ? after : before;
    }

    /** Whether the change's operation is {@code code} ('c', 'u', 'd', 'r', 'm'); false for no operation. */
    @ScalarFunction(names = {"cdcIsOp"}, nullableParameters = true)
    public static boolean cdcIsOp(String op, String code) {
        return op != null && op.equals(code);
    }

    /** Whether a record is no change of a row: no operation (a heartbeat) or a message ('m'). */
    @ScalarFunction(names = {"cdcNotARowChange"}, nullableParameters = true)
    public static boolean cdcNotARowChange(String op) {
        return op == null || op.equals("m");
    }

    /** A value, or {@code fallback} when it is null (a deleted order's status is 'deleted'). */
    @ScalarFunction(names = {"cdcOrElse"}, nullableParameters = true)
    public static String cdcOrElse(String value, String fallback) {
        return value != null ? value : fallback;
    }

    /** Epoch milliseconds of an ISO-8601 time with an offset (Debezium's isostring), else {@code fallback}. */
    @ScalarFunction(names = {"cdcIsoMillis"}, nullableParameters = true)
    public static long cdcIsoMillis(String iso, long fallback) {
        if (iso == null) {
            return fallback;
        }
        try {
            return OffsetDateTime.parse(iso).toInstant().toEpochMilli();
        } catch (DateTimeParseException e) {
            return fallback;
        }
    }
}
