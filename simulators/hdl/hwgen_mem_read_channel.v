// One read channel of hwgen_ext_mem (simulators/hdl/hwgen_ext_mem.v): a TESTBENCH
// model, hand-written, not part of the design (Verilog-2005).
//
// A queue of requests (address in units, beats)
// and the burst on offer. `beat_unit` is the unit address of the beat offered on
// `data_valid`; the parent reads the word there.
/* verilator lint_off BLKSEQ */  // next-state temporaries in the clocked block
module hwgen_mem_read_channel #(
    parameter AW = 40,
    parameter QUEUE = 4
) (
    input           clk,
    input           rst,
    input  [63:0]   now,
    input  [31:0]   latency,
    input  [31:0]   interval,
    input           hold,
    input           req_valid,
    output          req_ready,
    input  [AW-1:0] req_unit,
    input  [7:0]    req_beats,
    output reg      data_valid,
    input           data_ready,
    output [AW-1:0] beat_unit
);
    localparam QB = $clog2(QUEUE);
    reg [AW-1:0] q_unit [0:QUEUE-1];
    reg [7:0]    q_beats [0:QUEUE-1];
    reg [63:0]   q_due [0:QUEUE-1];     // edge at which the burst's first beat may be taken
    reg [QB-1:0] q_head = 0, q_tail = 0;
    reg [QB:0]   q_count = 0;
    reg          active = 1'b0;
    reg [AW-1:0] unit;
    reg [7:0]    left;
    reg [63:0]   due = 64'd0;           // edge at which the next beat may be taken
    assign req_ready = !hold && q_count != QUEUE;
    assign beat_unit = unit;
    initial data_valid = 1'b0;

    reg          act_n;
    reg [AW-1:0] unit_n;
    reg [7:0]    left_n;
    reg [63:0]   due_n;
    reg [QB:0]   count_n;
    always @(posedge clk) begin
        act_n = active;
        unit_n = unit;
        left_n = left;
        due_n = due;
        count_n = q_count;
        if (rst) begin
            act_n = 1'b0;
            count_n = 0;
            q_head <= 0;
            q_tail <= 0;
        end else begin
            if (data_valid && data_ready) begin
                unit_n = unit + 1'b1;
                left_n = left - 8'd1;
                due_n = now + {32'd0, interval};
                if (left == 8'd1) act_n = 1'b0;
            end
            if (!act_n && q_count != 0) begin     // the oldest queued burst goes on offer
                act_n = 1'b1;
                unit_n = q_unit[q_head];
                left_n = q_beats[q_head];
                due_n = q_due[q_head] > due_n ? q_due[q_head] : due_n;
                q_head <= q_head + 1'b1;
                count_n = count_n - 1'b1;
            end
            if (req_valid && req_ready && req_beats != 8'd0) begin
                if (!act_n) begin                  // nothing queued or on offer: straight on offer
                    act_n = 1'b1;
                    unit_n = req_unit;
                    left_n = req_beats;
                    due_n = now + {32'd0, latency} > due_n ? now + {32'd0, latency} : due_n;
                end else begin
                    q_unit[q_tail] <= req_unit;
                    q_beats[q_tail] <= req_beats;
                    q_due[q_tail] <= now + {32'd0, latency};
                    q_tail <= q_tail + 1'b1;
                    count_n = count_n + 1'b1;
                end
            end
        end
        active <= act_n;
        unit <= unit_n;
        left <= left_n;
        due <= due_n;
        q_count <= count_n;
        data_valid <= act_n && due_n <= now + 64'd1;
    end
endmodule
